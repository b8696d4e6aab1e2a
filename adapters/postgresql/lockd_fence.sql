-- lockd fencing for PostgreSQL 15+ (plain PL/pgSQL, no extension to build). docs/fencing.md is the
-- guide. Install once per database (idempotent, safe to run again on upgrade):
--   psql -v ON_ERROR_STOP=1 -d mydb -f lockd_fence.sql
--
-- In the same transaction as the write the lock protects:
--   BEGIN;
--   SELECT lockd_fence('wallet/alice', <lock.fence()>, '<client.cluster_id()>');
--   UPDATE wallet SET balance = balance - 70 WHERE account = 'alice';
--   COMMIT;
-- lockd_fence takes the row lock of the lock name's fence row until the transaction ends, so no
-- other transaction can admit a smaller fence between this check and this commit, and records the
-- fence as the largest seen. Fenced reads call lockd_fence_read (concurrent readers with one fence
-- do not block each other once that fence is recorded; the first reader of a new fence records it
-- under the exclusive lock, and the others wait for its transaction).
--
-- Errors (the transaction is aborted; nothing of it is written). Never continue a transaction
-- after a failed check: roll it back. Do not catch the error or run the call in a savepoint
-- (psql ON_ERROR_ROLLBACK, pgJDBC autosave, a PL/pgSQL EXCEPTION block): rolling back only the
-- savepoint also releases the fence row's lock, and the guarded write then commits.
--   LF001  stale fence: below the largest fence seen for the lock (a holder paused past its lease)
--   LF002  a fence of another cluster that is not above the largest seen (a holder of a cluster
--          replaced by a restore, or of an unrelated cluster)
--   LF003  the cluster is not admitted (only when lockd.admitted_clusters has rows)
--   22004  a NULL argument
--   22023  a bad argument: fence 0 or negative or above 2^64-1, a fractional fence given as a
--          number, an empty or overlong (> 512 bytes) lock name, a cluster id that is not 1..64
--          hex digits
--   22P02  a fence given as text that is not a decimal integer ('12abc', '1.5')
-- Under REPEATABLE READ or SERIALIZABLE a check fails with 40001 when another transaction
-- checked a write on the same lock and committed since this one's snapshot (every admitted
-- lockd_fence updates the fence row, an equal fence included): retry the transaction, as for any
-- serialization failure; READ COMMITTED waits instead. Run the check as a statement of its own,
-- before the transaction's reads: a statement such as
-- `SELECT balance, lockd_fence_read(...) FROM wallet` reads with the snapshot taken before the
-- check waited, and under READ COMMITTED misses the previous holder's last write.

CREATE SCHEMA IF NOT EXISTS lockd;

-- The largest fence seen per lock name, with the cluster that granted it. numeric(20,0): a fence
-- is an unsigned 64-bit number, which bigint cannot hold whole. Never delete or purge rows: a
-- holder can pause for any time, and a deleted row resets the lock's fence (docs/fencing.md).
-- The cost is one row per lock name, forever.
CREATE TABLE IF NOT EXISTS lockd.fences (
  lock_name  text PRIMARY KEY CHECK (octet_length(lock_name) BETWEEN 1 AND 512),
  fence      numeric(20, 0) NOT NULL CHECK (fence BETWEEN 1 AND 18446744073709551615),
  cluster_id text NOT NULL CHECK (cluster_id ~ '^[0-9a-f]{1,64}$'),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Optional pinning: when this table has rows, only these clusters' fences are admitted (LF003 for
-- any other). Empty (the default): a cluster is admitted for a lock by a fence above the largest
-- seen, which is what a restored cluster's raised token floor gives (docs/fencing.md).
CREATE TABLE IF NOT EXISTS lockd.admitted_clusters (
  cluster_id  text PRIMARY KEY CHECK (cluster_id ~ '^[0-9a-f]{1,64}$'),
  admitted_at timestamptz NOT NULL DEFAULT now()
);

-- Argument checks shared by every entry point; returns the normalised cluster id.
CREATE OR REPLACE FUNCTION lockd.check_args(p_name text, p_fence numeric, p_cluster_id text)
RETURNS text LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF p_name IS NULL OR p_fence IS NULL OR p_cluster_id IS NULL THEN
    RAISE EXCEPTION 'lockd_fence: lock name, fence and cluster id must not be NULL'
      USING ERRCODE = '22004';
  END IF;
  -- 512: lockd's default max_name_bytes (kMaxNameBytes in lockd/fence_adapters.h). PostgreSQL's
  -- text cannot hold a NUL, so names with one never get here.
  IF octet_length(p_name) = 0 OR octet_length(p_name) > 512 THEN
    RAISE EXCEPTION 'lockd_fence: lock name must be 1..512 bytes, got %', octet_length(p_name)
      USING ERRCODE = '22023';
  END IF;
  IF p_fence < 1 OR p_fence > 18446744073709551615 OR p_fence <> trunc(p_fence) THEN
    RAISE EXCEPTION 'lockd_fence: fence % on lock ''%'' is not a lockd fence (an integer in 1..2^64-1)',
      p_fence, p_name USING ERRCODE = '22023';
  END IF;
  IF p_cluster_id !~ '^[0-9a-fA-F]{1,64}$' THEN
    RAISE EXCEPTION 'lockd_fence: cluster id ''%'' is not a lockd cluster id (1..64 hex digits)',
      left(p_cluster_id, 80) USING ERRCODE = '22023';
  END IF;
  RETURN lower(p_cluster_id);
END $$;

-- A fence passed as text (e.g. an untyped libpq parameter): a decimal number or 22P02.
CREATE OR REPLACE FUNCTION lockd.parse_fence(p_fence text)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF p_fence IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_fence !~ '^\s*-?[0-9]{1,40}\s*$' THEN
    RAISE EXCEPTION 'lockd_fence: fence ''%'' is not a number', left(p_fence, 80)
      USING ERRCODE = '22P02';
  END IF;
  RETURN p_fence::numeric;
END $$;

-- Decides whether p_fence from p_cluster_id may follow the recorded (fence, cluster): raises the
-- documented error if not.
CREATE OR REPLACE FUNCTION lockd.admit(p_name text, p_fence numeric, p_cluster_id text,
                                       p_largest numeric, p_largest_cluster text)
RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM lockd.admitted_clusters)
     AND NOT EXISTS (SELECT 1 FROM lockd.admitted_clusters WHERE cluster_id = p_cluster_id) THEN
    RAISE EXCEPTION 'lockd_fence: cluster % is not admitted (lockd.admitted_clusters)', p_cluster_id
      USING ERRCODE = 'LF003', HINT = 'After a restore, admit the new cluster id: SELECT lockd_fence_admit_cluster(''<id>'')';
  END IF;
  IF p_largest IS NULL THEN
    RETURN;
  END IF;
  IF p_largest_cluster = p_cluster_id THEN
    IF p_fence < p_largest THEN
      RAISE EXCEPTION 'lockd_fence: stale fence % on lock ''%'': a holder with fence % came since',
        p_fence, p_name, p_largest USING ERRCODE = 'LF001';
    END IF;
  ELSIF p_fence <= p_largest THEN
    RAISE EXCEPTION 'lockd_fence: fence % of cluster % on lock ''%'' is not above the largest fence % (cluster %)',
      p_fence, p_cluster_id, p_name, p_largest, p_largest_cluster USING ERRCODE = 'LF002',
      HINT = 'A holder of a cluster replaced by a restore, or of an unrelated cluster; a restored cluster''s fences are above every older one.';
  END IF;
END $$;

-- SECURITY INVOKER as installed: application roles need write access to lockd.fences. To keep
-- them away from the table, make lockd.fence_write and lockd.fence_read SECURITY DEFINER and
-- revoke the table privileges (docs/fencing.md, Privileges; again after running this file).
--
-- The implementations live in schema lockd and name everything schema-qualified under a fixed
-- search_path, so neither the caller's search_path nor a same-named function elsewhere can change
-- what they call. The entry points (lockd_fence, lockd_fence_read, lockd_fence_admit_cluster,
-- created in the schema this file is run in) call them qualified.

-- The write-side check: admits p_fence for p_name and records it, holding the fence row's lock
-- until the transaction ends. Returns the fence recorded.
CREATE OR REPLACE FUNCTION lockd.fence_write(p_name text, p_fence numeric, p_cluster_id text)
RETURNS numeric LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_cluster text := lockd.check_args(p_name, p_fence, p_cluster_id);
  v_row lockd.fences%ROWTYPE;
BEGIN
  -- Lock the row, creating it if absent; a concurrent creator makes ON CONFLICT wait for it.
  SELECT * INTO v_row FROM lockd.fences WHERE lock_name = p_name FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM lockd.admit(p_name, p_fence, v_cluster, NULL, NULL);
    INSERT INTO lockd.fences (lock_name, fence, cluster_id) VALUES (p_name, p_fence, v_cluster)
      ON CONFLICT (lock_name) DO NOTHING;
    IF FOUND THEN
      RETURN p_fence;
    END IF;
    SELECT * INTO v_row FROM lockd.fences WHERE lock_name = p_name FOR UPDATE;
  END IF;
  PERFORM lockd.admit(p_name, p_fence, v_cluster, v_row.fence, v_row.cluster_id);
  -- Updated even when the fence is equal: the new row version is what makes the next holder's
  -- FOR UPDATE / FOR SHARE fail with 40001 under REPEATABLE READ or SERIALIZABLE when its
  -- snapshot predates this transaction's commit. A row that was only locked raises nothing, and
  -- such a holder would read data from before this write and overwrite it (a lost update).
  UPDATE lockd.fences SET fence = p_fence, cluster_id = v_cluster, updated_at = now()
    WHERE lock_name = p_name;
  RETURN p_fence;
END $$;


-- The read-side check: admits p_fence like lockd_fence. A fence equal to the largest seen takes a
-- share lock on the row (readers of one run do not block each other once their fence is recorded;
-- a writer with a larger fence waits for them); a larger one is recorded as lockd_fence does, so
-- no stale holder can write after this read.
CREATE OR REPLACE FUNCTION lockd.fence_read(p_name text, p_fence numeric, p_cluster_id text)
RETURNS numeric LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_cluster text := lockd.check_args(p_name, p_fence, p_cluster_id);
  v_row lockd.fences%ROWTYPE;
BEGIN
  SELECT * INTO v_row FROM lockd.fences WHERE lock_name = p_name;
  IF NOT FOUND OR p_fence > v_row.fence OR v_row.cluster_id <> v_cluster THEN
    RETURN lockd.fence_write(p_name, p_fence, v_cluster);
  END IF;
  -- The fence only rises, so under the share lock it is this fence or larger.
  SELECT * INTO v_row FROM lockd.fences WHERE lock_name = p_name FOR SHARE;
  PERFORM lockd.admit(p_name, p_fence, v_cluster, v_row.fence, v_row.cluster_id);
  RETURN p_fence;
END $$;

-- Pins the clusters whose fences are admitted (see lockd.admitted_clusters).
CREATE OR REPLACE FUNCTION lockd.admit_cluster(p_cluster_id text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF p_cluster_id IS NULL OR p_cluster_id !~ '^[0-9a-fA-F]{1,64}$' THEN
    RAISE EXCEPTION 'lockd_fence: cluster id ''%'' is not a lockd cluster id (1..64 hex digits)',
      left(p_cluster_id, 80) USING ERRCODE = '22023';
  END IF;
  INSERT INTO lockd.admitted_clusters (cluster_id) VALUES (lower(p_cluster_id))
    ON CONFLICT DO NOTHING;
END $$;

-- The entry points. The text overloads take the fence as an untyped libpq parameter.
CREATE OR REPLACE FUNCTION lockd_fence(p_name text, p_fence numeric, p_cluster_id text)
RETURNS numeric LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT lockd.fence_write(p_name, p_fence, p_cluster_id)
$$;

CREATE OR REPLACE FUNCTION lockd_fence(p_name text, p_fence text, p_cluster_id text)
RETURNS numeric LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT lockd.fence_write(p_name, lockd.parse_fence(p_fence), p_cluster_id)
$$;

CREATE OR REPLACE FUNCTION lockd_fence_read(p_name text, p_fence numeric, p_cluster_id text)
RETURNS numeric LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT lockd.fence_read(p_name, p_fence, p_cluster_id)
$$;

CREATE OR REPLACE FUNCTION lockd_fence_read(p_name text, p_fence text, p_cluster_id text)
RETURNS numeric LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT lockd.fence_read(p_name, lockd.parse_fence(p_fence), p_cluster_id)
$$;

CREATE OR REPLACE FUNCTION lockd_fence_admit_cluster(p_cluster_id text)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT lockd.admit_cluster(p_cluster_id)
$$;
