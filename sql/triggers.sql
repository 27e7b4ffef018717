-- The triggers of schema fairlane, by table.

-- Triggers fire in name order: authorize (as the inserting role), then accept (as the owner).
CREATE TRIGGER outbox_1_authorize AFTER INSERT ON fairlane.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.authorize_outbox_v1();
CREATE TRIGGER outbox_2_accept AFTER INSERT ON fairlane.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.accept_outbox_v2();

-- A new destination's state row and bucket slices.
CREATE TRIGGER destinations_state AFTER INSERT ON fairlane.destinations
    FOR EACH ROW EXECUTE FUNCTION fairlane.destination_created_v2();

-- A destination's or sender's quota windows follow its per_minute, per_hour, per_day, reset_timezone and
-- window_kind (docs/decisions/0020).
CREATE TRIGGER destinations_windows AFTER INSERT OR UPDATE OF per_minute, per_hour, per_day, reset_timezone, window_kind
    ON fairlane.destinations FOR EACH ROW EXECUTE FUNCTION fairlane.sync_windows_v1();
CREATE TRIGGER senders_windows AFTER INSERT OR UPDATE OF per_minute, per_hour, per_day, reset_timezone, window_kind
    ON fairlane.senders FOR EACH ROW EXECUTE FUNCTION fairlane.sync_windows_v1();

-- A queue joining or leaving its destination's active set.
CREATE TRIGGER queues_membership BEFORE UPDATE OF queued_count ON fairlane.queues
    FOR EACH ROW WHEN ((OLD.queued_count = 0) <> (NEW.queued_count = 0))
    EXECUTE FUNCTION fairlane.queue_membership_v2();

-- Configuration that changes fair shares makes every destination's portions stale.
CREATE TRIGGER tenant_sets_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.tenant_sets
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER tenants_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER senders_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.senders
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER allocations_shares AFTER INSERT OR UPDATE OR DELETE ON fairlane.allocations
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();
CREATE TRIGGER destinations_shares AFTER UPDATE ON fairlane.destinations
    FOR EACH STATEMENT EXECUTE FUNCTION fairlane.shares_changed_v1();

-- A tenant's status_callback must be a URL callbacks may reach (docs/decisions/0017).
CREATE TRIGGER tenants_status_callback BEFORE INSERT OR UPDATE OF status_callback ON fairlane.tenants
    FOR EACH ROW EXECUTE FUNCTION fairlane.check_tenant_callback_v1();
