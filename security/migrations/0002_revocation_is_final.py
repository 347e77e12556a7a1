# Revocation becomes final: ``revoked_at`` alone says a token is revoked, and a trigger
# refuses any UPDATE that clears or moves it, whatever issues it (admin, ORM, raw SQL).

import security.models
from django.db import migrations, models
from django.utils import timezone

POSTGRESQL_UP = """
CREATE OR REPLACE FUNCTION security_apitoken_revocation_is_final() RETURNS trigger AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'a revoked token cannot be un-revoked'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER security_apitoken_revocation_is_final
    BEFORE UPDATE ON security_apitoken
    FOR EACH ROW EXECUTE FUNCTION security_apitoken_revocation_is_final();
"""
POSTGRESQL_DOWN = """
DROP TRIGGER IF EXISTS security_apitoken_revocation_is_final ON security_apitoken;
DROP FUNCTION IF EXISTS security_apitoken_revocation_is_final();
"""
SQLITE_UP = """
CREATE TRIGGER security_apitoken_revocation_is_final
    BEFORE UPDATE OF revoked_at ON security_apitoken
    FOR EACH ROW
    WHEN OLD.revoked_at IS NOT NULL
        AND (NEW.revoked_at IS NULL OR NEW.revoked_at <> OLD.revoked_at)
BEGIN
    SELECT RAISE(ABORT, 'a revoked token cannot be un-revoked');
END;
"""
SQLITE_DOWN = "DROP TRIGGER IF EXISTS security_apitoken_revocation_is_final;"


def _run(statements: dict[str, str]):
    def run(apps, schema_editor):
        sql = statements.get(schema_editor.connection.vendor)
        if sql:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)

    return run


def stamp_revoked(apps, schema_editor):
    ApiToken = apps.get_model("security", "ApiToken")
    ApiToken.objects.filter(revoked=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


class Migration(migrations.Migration):

    dependencies = [
        ('security', '0001_initial'),
    ]

    operations = [
        migrations.RunPython(stamp_revoked, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='apitoken',
            name='revoked',
        ),
        migrations.AlterField(
            model_name='queuepermission',
            name='pattern',
            field=models.CharField(help_text='Anchored, case-sensitive; * matches any run of characters.', max_length=128, validators=[security.models.validate_pattern_text]),
        ),
        migrations.AlterField(
            model_name='queuepermission',
            name='verbs',
            field=models.CharField(help_text='Comma-separated: * or any of push, pull, ack, fail, progress, getJob, getJobs, cancel, update, retry, clean, reveal, admin', max_length=200, validators=[security.models.validate_verbs_text]),
        ),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL_UP, "sqlite": SQLITE_UP}),
            _run({"postgresql": POSTGRESQL_DOWN, "sqlite": SQLITE_DOWN}),
        ),
    ]
