from __future__ import annotations

from django.urls import path

from . import (
    event_views,
    flow_views,
    job_views,
    lifecycle_views,
    me_views,
    pushview,
    queue_settings_views,
    queue_views,
    schedule_views,
    webhook_views,
)

urlpatterns = [
    path("me", me_views.MeApi.as_view(), name="me"),
    path("queues", queue_views.QueueListApi.as_view(), name="queue-list"),
    path("queues/<str:queue>", queue_views.QueueStatsApi.as_view(), name="queue-stats"),
    path(
        "queues/<str:queue>/pause", queue_settings_views.QueuePauseApi.as_view(), name="queue-pause"
    ),
    path(
        "queues/<str:queue>/resume",
        queue_settings_views.QueueResumeApi.as_view(),
        name="queue-resume",
    ),
    path(
        "queues/<str:queue>/rate-limit",
        queue_settings_views.QueueRateLimitApi.as_view(),
        name="queue-rate-limit",
    ),
    path(
        "queues/<str:queue>/schema",
        queue_settings_views.QueueSchemaApi.as_view(),
        name="queue-schema",
    ),
    path(
        "queues/<str:queue>/concurrency",
        queue_settings_views.QueueConcurrencyApi.as_view(),
        name="queue-concurrency",
    ),
    path(
        "queues/<str:queue>/schedules",
        schedule_views.ScheduleListApi.as_view(),
        name="schedule-list",
    ),
    path(
        "queues/<str:queue>/schedules/<str:name>",
        schedule_views.ScheduleApi.as_view(),
        name="schedule",
    ),
    path(
        "queues/<str:queue>/schedules/<str:name>/pause",
        schedule_views.SchedulePauseApi.as_view(),
        name="schedule-pause",
    ),
    path(
        "queues/<str:queue>/schedules/<str:name>/resume",
        schedule_views.ScheduleResumeApi.as_view(),
        name="schedule-resume",
    ),
    path(
        "queues/<str:queue>/schedules/<str:name>/trigger",
        schedule_views.ScheduleTriggerApi.as_view(),
        name="schedule-trigger",
    ),
    path(
        "queues/<str:queue>/webhooks",
        webhook_views.WebhookListApi.as_view(),
        name="webhook-list",
    ),
    path(
        "queues/<str:queue>/webhooks/<str:name>",
        webhook_views.WebhookApi.as_view(),
        name="webhook",
    ),
    path(
        "queues/<str:queue>/webhooks/<str:name>/rotate-secret",
        webhook_views.WebhookRotateSecretApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "queues/<str:queue>/group-concurrency",
        queue_settings_views.QueueGroupConcurrencyApi.as_view(),
        name="queue-group-concurrency",
    ),
    path("queues/<str:queue>/jobs", pushview.route, name="queue-jobs"),
    path(
        "queues/<str:queue>/jobs/batch",
        queue_views.QueueJobsBatchApi.as_view(),
        name="queue-jobs-batch",
    ),
    path("queues/<str:queue>/flows", flow_views.QueueFlowsApi.as_view(), name="queue-flows"),
    path("queues/<str:queue>/pull", queue_views.QueuePullApi.as_view(), name="queue-pull"),
    path("queues/<str:queue>/clean", queue_views.QueueCleanApi.as_view(), name="queue-clean"),
    path("queues/<str:queue>/events", event_views.QueueEventsApi.as_view(), name="queue-events"),
    path("jobs/ack", job_views.JobAckBatchApi.as_view(), name="jobs-ack"),
    path("jobs/<str:job_id>", job_views.JobApi.as_view(), name="job"),
    path("jobs/<str:job_id>/wait", job_views.JobWaitApi.as_view(), name="job-wait"),
    path("jobs/<str:job_id>/ack", job_views.JobAckApi.as_view(), name="job-ack"),
    path("jobs/<str:job_id>/children", flow_views.JobChildrenApi.as_view(), name="job-children"),
    path("jobs/<str:job_id>/fail", job_views.JobFailApi.as_view(), name="job-fail"),
    path("jobs/<str:job_id>/progress", job_views.JobProgressApi.as_view(), name="job-progress"),
    path("jobs/<str:job_id>/cancel", job_views.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<str:job_id>/retry", job_views.JobRetryApi.as_view(), name="job-retry"),
    path("jobs/<str:job_id>/release", lifecycle_views.JobReleaseApi.as_view(), name="job-release"),
    path("jobs/<str:job_id>/snooze", lifecycle_views.JobSnoozeApi.as_view(), name="job-snooze"),
    path("jobs/<str:job_id>/promote", lifecycle_views.JobPromoteApi.as_view(), name="job-promote"),
    path(
        "queues/<str:queue>/retry-failed",
        lifecycle_views.QueueRetryFailedApi.as_view(),
        name="queue-retry-failed",
    ),
]
