"""Create the default periodic jobs (weekly re-profiling, nightly refit); edits in the admin are kept."""

from django.db import migrations

from routing.services.schedules import schedules_ensure_in_migration


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_job_state_updated_at_active_unique"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedules_ensure_in_migration, migrations.RunPython.noop)]
