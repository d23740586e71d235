-- One spelling for owner ids: 32 lowercase hex digits, what SQLAlchemy's UUIDType writes on
-- SQLite and what this library looks rows up by. A writer that binds a uuid as a string instead
-- (hyphenated, or in capitals) would leave a ledger row outside its owner's balance check, an
-- API key that never authenticates, a payment or a sign-in link its user never sees. PostgreSQL's
-- uuid type reads every spelling as one value; on SQLite, these triggers give the columns the
-- same rule: right after a row is written with another spelling, its owner id is rewritten to
-- the one spelling (the tables have no unique key on the owner, so nothing can collide). The
-- UPDATEs fix rows already written.

UPDATE credit_history SET user_id = lower(replace(user_id, '-', ''))
 WHERE user_id <> lower(replace(user_id, '-', ''));
CREATE TRIGGER tr_credit_history_user_id_spelling_insert AFTER INSERT ON credit_history
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE credit_history SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER tr_credit_history_user_id_spelling_update AFTER UPDATE OF user_id ON credit_history
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE credit_history SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;

UPDATE user_api_key SET user_id = lower(replace(user_id, '-', ''))
 WHERE user_id <> lower(replace(user_id, '-', ''));
CREATE TRIGGER tr_user_api_key_user_id_spelling_insert AFTER INSERT ON user_api_key
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE user_api_key SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER tr_user_api_key_user_id_spelling_update AFTER UPDATE OF user_id ON user_api_key
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE user_api_key SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;

UPDATE payment_record SET user_id = lower(replace(user_id, '-', ''))
 WHERE user_id <> lower(replace(user_id, '-', ''));
CREATE TRIGGER tr_payment_record_user_id_spelling_insert AFTER INSERT ON payment_record
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE payment_record SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER tr_payment_record_user_id_spelling_update AFTER UPDATE OF user_id ON payment_record
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE payment_record SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;

UPDATE user_provider SET user_id = lower(replace(user_id, '-', ''))
 WHERE user_id <> lower(replace(user_id, '-', ''));
CREATE TRIGGER tr_user_provider_user_id_spelling_insert AFTER INSERT ON user_provider
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE user_provider SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER tr_user_provider_user_id_spelling_update AFTER UPDATE OF user_id ON user_provider
WHEN NEW.user_id <> lower(replace(NEW.user_id, '-', ''))
BEGIN
    UPDATE user_provider SET user_id = lower(replace(NEW.user_id, '-', '')) WHERE rowid = NEW.rowid;
END;
