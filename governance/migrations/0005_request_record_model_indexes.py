"""Indexes for the request log's model filter (requested or served model, newest first).

Built with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, so that a large,
busy request log keeps taking inserts while they build (about half a minute
each at ten million rows); plainly elsewhere.
"""

from django.db import migrations, models


class AddIndexWithoutLocking(migrations.AddIndex):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("governance", "0004_usage_rollups_and_budget_history"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="requestrecord",
            index=models.Index(fields=["requested_model", "time"], name="record_requested_time"),
        ),
        AddIndexWithoutLocking(
            model_name="requestrecord",
            index=models.Index(fields=["served_model", "time"], name="record_served_time"),
        ),
    ]
