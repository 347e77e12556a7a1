# Revocation becomes final, whatever issues the SQL (admin, ORM, raw statements):
# - ``revoked_at`` alone says a token is revoked; once set it never changes;
# - a token's ``public_id`` and ``secret_hash`` never change;
# - a revoked public id goes into ``security_revokedpublicid``, and no token row may be
#   inserted with such an id, so deleting a revoked token and re-inserting its
#   credentials does not bring it back (an INSERT trigger also fires for SQLite's
#   INSERT OR REPLACE). On PostgreSQL rows there can be neither changed nor deleted
#   (TRUNCATE, like DROP TRIGGER, stays with the table's owner: Django's test flush
#   needs it). On SQLite, the embedded development default, they cannot be changed;
#   deleting them is left possible because Django's flush deletes row by row.

import security.models
from django.db import migrations, models
from django.utils import timezone

POSTGRESQL_UP = """
CREATE FUNCTION security_apitoken_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.public_id IS DISTINCT FROM OLD.public_id
                OR NEW.secret_hash IS DISTINCT FROM OLD.secret_hash THEN
            RAISE EXCEPTION 'a token''s public id and secret hash never change'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
            RAISE EXCEPTION 'a revoked token cannot be un-revoked'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM security_revokedpublicid WHERE public_id = NEW.public_id) THEN
        RAISE EXCEPTION 'this public id was revoked'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.revoked_at IS NOT NULL THEN
        INSERT INTO security_revokedpublicid (public_id, revoked_at)
            VALUES (NEW.public_id, NEW.revoked_at) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER security_apitoken_guard
    BEFORE INSERT OR UPDATE ON security_apitoken
    FOR EACH ROW EXECUTE FUNCTION security_apitoken_guard();

CREATE FUNCTION security_revokedpublicid_is_permanent() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'a revoked public id is kept for good'
        USING ERRCODE = 'integrity_constraint_violation';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER security_revokedpublicid_is_permanent
    BEFORE UPDATE OR DELETE ON security_revokedpublicid
    FOR EACH ROW EXECUTE FUNCTION security_revokedpublicid_is_permanent();
"""
POSTGRESQL_DOWN = """
DROP TRIGGER IF EXISTS security_apitoken_guard ON security_apitoken;
DROP FUNCTION IF EXISTS security_apitoken_guard();
DROP TRIGGER IF EXISTS security_revokedpublicid_is_permanent ON security_revokedpublicid;
DROP FUNCTION IF EXISTS security_revokedpublicid_is_permanent();
"""
SQLITE_UP = [
    """
    CREATE TRIGGER security_apitoken_credentials_fixed
        BEFORE UPDATE OF public_id, secret_hash ON security_apitoken
        FOR EACH ROW
        WHEN NEW.public_id IS NOT OLD.public_id OR NEW.secret_hash IS NOT OLD.secret_hash
    BEGIN
        SELECT RAISE(ABORT, 'a token''s public id and secret hash never change');
    END
    """,
    """
    CREATE TRIGGER security_apitoken_revocation_is_final
        BEFORE UPDATE OF revoked_at ON security_apitoken
        FOR EACH ROW
        WHEN OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at
    BEGIN
        SELECT RAISE(ABORT, 'a revoked token cannot be un-revoked');
    END
    """,
    """
    CREATE TRIGGER security_apitoken_revoked_id_refused
        BEFORE INSERT ON security_apitoken
        FOR EACH ROW
        WHEN EXISTS (SELECT 1 FROM security_revokedpublicid WHERE public_id = NEW.public_id)
    BEGIN
        SELECT RAISE(ABORT, 'this public id was revoked');
    END
    """,
    """
    CREATE TRIGGER security_apitoken_remember_revoked
        AFTER UPDATE OF revoked_at ON security_apitoken
        FOR EACH ROW
        WHEN NEW.revoked_at IS NOT NULL
    BEGIN
        INSERT OR IGNORE INTO security_revokedpublicid (public_id, revoked_at)
            VALUES (NEW.public_id, NEW.revoked_at);
    END
    """,
    """
    CREATE TRIGGER security_apitoken_remember_revoked_insert
        AFTER INSERT ON security_apitoken
        FOR EACH ROW
        WHEN NEW.revoked_at IS NOT NULL
    BEGIN
        INSERT OR IGNORE INTO security_revokedpublicid (public_id, revoked_at)
            VALUES (NEW.public_id, NEW.revoked_at);
    END
    """,
    """
    CREATE TRIGGER security_revokedpublicid_no_update
        BEFORE UPDATE ON security_revokedpublicid
    BEGIN
        SELECT RAISE(ABORT, 'a revoked public id is kept for good');
    END
    """,
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "security_apitoken_credentials_fixed",
        "security_apitoken_revocation_is_final",
        "security_apitoken_revoked_id_refused",
        "security_apitoken_remember_revoked",
        "security_apitoken_remember_revoked_insert",
        "security_revokedpublicid_no_update",
    )
]


def _run(statements):
    def run(apps, schema_editor):
        with schema_editor.connection.cursor() as cursor:
            for sql in statements.get(schema_editor.connection.vendor, []):
                cursor.execute(sql)

    return run


def stamp_revoked(apps, schema_editor):
    """Tokens revoked under the old flag get their revocation time; every revoked id
    goes into the permanent list (before the triggers exist)."""
    ApiToken = apps.get_model("security", "ApiToken")
    RevokedPublicId = apps.get_model("security", "RevokedPublicId")
    ApiToken.objects.filter(revoked=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    RevokedPublicId.objects.bulk_create(
        RevokedPublicId(public_id=public_id, revoked_at=revoked_at)
        for public_id, revoked_at in ApiToken.objects.filter(revoked=True).values_list(
            "public_id", "revoked_at"
        )
    )


class Migration(migrations.Migration):

    dependencies = [
        ('security', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='RevokedPublicId',
            fields=[
                ('public_id', models.CharField(max_length=16, primary_key=True, serialize=False)),
                ('revoked_at', models.DateTimeField()),
            ],
        ),
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
            _run({"postgresql": [POSTGRESQL_UP], "sqlite": SQLITE_UP}),
            _run({"postgresql": [POSTGRESQL_DOWN], "sqlite": SQLITE_DOWN}),
        ),
    ]
