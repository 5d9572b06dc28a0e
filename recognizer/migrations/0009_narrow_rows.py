"""Rows that scan fast (docs/scale.md): on PostgreSQL, a drawing's bulky columns (the strokes' JSON,
the 28x28 image, the probabilities; the PNG already was) go to the table's TOAST storage as soon as
a row passes 256 bytes, instead of staying in the row until it passes ~2 KB. The heap row shrinks
from ~1,700 B to ~280 B: a list, a count, a filter without an index, VACUUM read 6x less.

Metadata only (a brief lock, no rewrite): rows written from now on are narrow (a drawing is toasted
when its worker stores the prediction); the rows stored before are moved in batches by
`manage.py compact_drawings`. Nothing to do on SQLite."""
from typing import Any

from django.db import migrations

TARGET = 256


def narrow(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE recognizer_drawing SET (toast_tuple_target = {TARGET})")


def wide(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE recognizer_drawing RESET (toast_tuple_target)")


class Migration(migrations.Migration):

    dependencies = [
        ('recognizer', '0008_effective_label_index'),
    ]

    operations = [migrations.RunPython(narrow, wide)]
