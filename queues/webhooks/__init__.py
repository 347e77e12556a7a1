"""Webhook deliveries: ``dispatch`` queues them from the job event log as jobs of the
internal queue, ``deliver`` leases those jobs and POSTs them, signed, through the SSRF
guard (kernel.safehttp). ``manage.py run_webhooks`` runs both."""
