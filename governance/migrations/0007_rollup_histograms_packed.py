"""Rollup histograms stored as packed arrays: ``[first bin, count, count, ...]``.

Each existing row's ``{"bin": count}`` object becomes the array of the counts
from its first used bin to its last (zeros between), unless it uses fewer
than half the bins of that span: sparse ones stay objects, which are then
smaller (``governance.rollups.histogram_stored_form`` chooses the same way).
The counts are the same, so a day still holds the sum of its hours
exactly. Backwards, the arrays become objects again.
"""

from django.db import migrations, models

BATCH = 5_000


def _packed(stored):
    if isinstance(stored, list):
        return stored
    counts = {int(index): count for index, count in stored.items() if count}
    if not counts:
        return []
    first, last = min(counts), max(counts)
    if last - first + 1 > 2 * len(counts):
        return stored  # sparse: the object is smaller
    return [first, *(counts.get(index, 0) for index in range(first, last + 1))]


def _unpacked(stored):
    if isinstance(stored, dict):
        return stored
    if not stored:
        return {}
    first = stored[0]
    return {str(first + offset): count for offset, count in enumerate(stored[1:]) if count}


def _convert(apps, convert):
    rollup = apps.get_model("governance", "UsageRollup")
    last = 0
    while True:
        rows = list(rollup.objects.filter(pk__gt=last).order_by("pk")[:BATCH])
        if not rows:
            return
        for row in rows:
            row.latency_histogram = convert(row.latency_histogram)
            row.ttft_histogram = convert(row.ttft_histogram)
        rollup.objects.bulk_update(rows, ["latency_histogram", "ttft_histogram"])
        last = rows[-1].pk


# PostgreSQL converts in place, one statement per column: a row at a time
# through the ORM took 8 min 50 s for 511,046 rows (docs/ledger.md).
PACK_SQL = """
UPDATE governance_usagerollup SET {column} = COALESCE((
    SELECT jsonb_build_array(span.first)
        || jsonb_agg(COALESCE(({column} ->> bin::text)::bigint, 0) ORDER BY bin)
    FROM (
        SELECT min(key::int) AS first, max(key::int) AS last
        FROM jsonb_object_keys({column}) AS key
    ) AS span, generate_series(span.first, span.last) AS bin
    GROUP BY span.first
), '[]'::jsonb)
WHERE jsonb_typeof({column}) = 'object' AND (
    SELECT count(*) = 0 OR max(key::int) - min(key::int) + 1 <= 2 * count(*)
    FROM jsonb_object_keys({column}) AS key
)
"""
UNPACK_SQL = """
UPDATE governance_usagerollup SET {column} = COALESCE((
    SELECT jsonb_object_agg(({column} ->> 0)::int + position - 2, count)
    FROM jsonb_array_elements({column}) WITH ORDINALITY AS element(count, position)
    WHERE position > 1 AND count <> '0'::jsonb
), '{{}}'::jsonb)
WHERE jsonb_typeof({column}) = 'array'
"""
COLUMNS = ("latency_histogram", "ttft_histogram")


def _run(apps, schema_editor, sql, convert):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        _convert(apps, convert)
        return
    with connection.cursor() as cursor:
        for column in COLUMNS:
            cursor.execute(sql.format(column=column))


def pack(apps, schema_editor):
    _run(apps, schema_editor, PACK_SQL, _packed)


def unpack(apps, schema_editor):
    _run(apps, schema_editor, UNPACK_SQL, _unpacked)


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_request_record_content")]

    operations = [
        migrations.AlterField(
            model_name="usagerollup",
            name="latency_histogram",
            field=models.JSONField(default=list),
        ),
        migrations.AlterField(
            model_name="usagerollup",
            name="ttft_histogram",
            field=models.JSONField(default=list),
        ),
        migrations.RunPython(pack, unpack),
    ]
