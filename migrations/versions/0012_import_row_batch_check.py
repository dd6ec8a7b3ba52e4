"""om_import_row's key to its batch checked once per statement on PostgreSQL.

An import writes one undo record per data row (100,000 a batch), all naming the same batch.
The declared foreign key (tenant_id, batch_id) → om_import_batch(tenant_id, id) looked that
one batch up again for every record: ≈0.6–0.8 s of a 100,000-row import on the bench
machine, about a tenth of it. Measured in psql, 100,000 undo records took 0.83–1.6 s with the
key and 0.77–0.80 s with the statement-level check below.

The check keeps what the key guaranteed:
- every inserted or updated record names an existing batch of its own sub-district (one
  anti-join over the statement's new rows); the batches are locked FOR KEY SHARE first, so a
  batch deleted meanwhile is either waited for (then reported missing) or kept until commit;
- deleting a batch deletes its records (the key's ON DELETE CASCADE), in the same statement,
  under READ COMMITTED (under REPEATABLE READ a concurrent import's records could escape the
  deleting statement's snapshot, so such a delete is refused with 40001, as the key did);
  truncating the batches truncates the records;
- a batch's (tenant_id, id) never changes while records name it.
The functions name their tables through `search_path = public, pg_temp`, so a caller's
temporary table cannot stand in for om_import_batch.
A violation is SQLSTATE 23503 (foreign_key_violation) naming the old constraint, as before.
The functions run with the caller's rights: row-level security lets an import see, lock and
delete only its own sub-district's batches, which is stricter than the key (it bypassed RLS).

SQLite keeps the declared key (it checks it by the primary-key index, without a trigger).

Revision ID: 0012_import_row_batch_check
Revises: 0011_household_tenant_key
Create Date: 2026-12-06 21:00:00
"""
from alembic import op

revision = '0012_import_row_batch_check'
down_revision = '0011_household_tenant_key'
branch_labels = None
depends_on = None

_KEY = 'om_import_row_tenant_id_batch_id_fkey'

_FUNCTIONS = f"""
CREATE FUNCTION om_import_row_batch_check() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM 1 FROM om_import_batch b
        JOIN (SELECT DISTINCT tenant_id, batch_id FROM om_new_rows) n
          ON b.tenant_id = n.tenant_id AND b.id = n.batch_id
        FOR KEY SHARE OF b;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT tenant_id, batch_id FROM om_new_rows) n
               WHERE NOT EXISTS (SELECT 1 FROM om_import_batch b
                                 WHERE b.tenant_id = n.tenant_id AND b.id = n.batch_id)) THEN
        RAISE EXCEPTION 'insert or update on table "om_import_row" violates foreign key '
                        'constraint "{_KEY}"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{_KEY}',
                  TABLE = 'om_import_row',
                  DETAIL = 'Key (tenant_id, batch_id) is not present in table "om_import_batch".';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION om_import_batch_delete_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $$
BEGIN
    -- Under REPEATABLE READ the DELETE below would not see records a concurrent import
    -- committed after this transaction's snapshot (the key raised 40001 there): refused.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'import batches are deleted under READ COMMITTED only'
            USING ERRCODE = 'serialization_failure';
    END IF;
    DELETE FROM om_import_row r USING om_gone_batches g
        WHERE r.tenant_id = g.tenant_id AND r.batch_id = g.id;
    RETURN NULL;
END $$;

CREATE FUNCTION om_import_batch_truncate_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $$
BEGIN
    TRUNCATE om_import_row;  -- what TRUNCATE … CASCADE did through the key
    RETURN NULL;
END $$;

CREATE FUNCTION om_import_batch_key_fixed() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM om_import_row r
               WHERE r.tenant_id = OLD.tenant_id AND r.batch_id = OLD.id) THEN
        RAISE EXCEPTION 'update on table "om_import_batch" violates foreign key constraint '
                        '"{_KEY}" on table "om_import_row"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{_KEY}',
                  TABLE = 'om_import_batch';
    END IF;
    RETURN NEW;
END $$;
"""

_TRIGGERS = (
    "CREATE TRIGGER om_import_row_batch_check_insert AFTER INSERT ON om_import_row "
    "REFERENCING NEW TABLE AS om_new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION om_import_row_batch_check()",
    "CREATE TRIGGER om_import_row_batch_check_update AFTER UPDATE ON om_import_row "
    "REFERENCING NEW TABLE AS om_new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION om_import_row_batch_check()",
    "CREATE TRIGGER om_import_batch_delete_rows AFTER DELETE ON om_import_batch "
    "REFERENCING OLD TABLE AS om_gone_batches FOR EACH STATEMENT "
    "EXECUTE FUNCTION om_import_batch_delete_rows()",
    "CREATE TRIGGER om_import_batch_truncate_rows BEFORE TRUNCATE ON om_import_batch "
    "FOR EACH STATEMENT EXECUTE FUNCTION om_import_batch_truncate_rows()",
    "CREATE TRIGGER om_import_batch_key_fixed BEFORE UPDATE OF tenant_id, id "
    "ON om_import_batch FOR EACH ROW WHEN "
    "(OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.id IS DISTINCT FROM NEW.id) "
    "EXECUTE FUNCTION om_import_batch_key_fixed()",
)

_DROP = (
    "DROP TRIGGER IF EXISTS om_import_row_batch_check_insert ON om_import_row",
    "DROP TRIGGER IF EXISTS om_import_row_batch_check_update ON om_import_row",
    "DROP TRIGGER IF EXISTS om_import_batch_delete_rows ON om_import_batch",
    "DROP TRIGGER IF EXISTS om_import_batch_truncate_rows ON om_import_batch",
    "DROP TRIGGER IF EXISTS om_import_batch_key_fixed ON om_import_batch",
    "DROP FUNCTION IF EXISTS om_import_row_batch_check()",
    "DROP FUNCTION IF EXISTS om_import_batch_delete_rows()",
    "DROP FUNCTION IF EXISTS om_import_batch_truncate_rows()",
    "DROP FUNCTION IF EXISTS om_import_batch_key_fixed()",
)


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_constraint(_KEY, 'om_import_row', type_='foreignkey')
    op.execute(_FUNCTIONS)
    for statement in _TRIGGERS:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for statement in _DROP:
        op.execute(statement)
    op.create_foreign_key(_KEY, 'om_import_row', 'om_import_batch', ['tenant_id', 'batch_id'],
                          ['tenant_id', 'id'], ondelete='CASCADE')
