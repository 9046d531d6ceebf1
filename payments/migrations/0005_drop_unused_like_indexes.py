# Every update of an attempt that is not HOT writes a new entry into every index of the table,
# and the poll lease (next_poll_at, which attempt_poll_due indexes) is never HOT. Django adds a
# varchar_pattern_ops ("_like") index beside each indexed or unique CharField for LIKE 'x%'
# queries; nothing here queries attempts that way (the admin's search is a contains match, which
# no btree serves). Dropping the three takes 11 indexes per lease write down to 8: at 1,000,000
# attempts the poll claim (`manage.py bench poll-sweep`) drained 23 % more rows per second (median
# of three alternating drains, 6,328 -> 7,793) touching 24 % fewer index blocks.
#
# Django keeps no state for these indexes; a later AlterField of one of these columns may add
# its "_like" index back (drop it again then). Dropped concurrently: attempts keep being written.

from django.db import migrations

LIKE_INDEXES = {
    "payments_paymentattempt_public_id_ae52bc01_like": "public_id",
    "payments_paymentattempt_out_trade_no_1e13fd13_like": "out_trade_no",
    "payments_paymentattempt_status_26b68c60_like": "status",
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0004_permissions"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
            reverse_sql=(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "payments_paymentattempt"'
                f' ("{column}" varchar_pattern_ops)'
            ),
        )
        for name, column in LIKE_INDEXES.items()
    ]
