-- The original's sample rows: a working account, a suspended one, and the
-- plan both use (it becomes plan 1 in an empty `plans` table).
-- totalBitrate 1064 fits one 500+32 kbps stream with one player.
-- `npm run db:setup -- --sample` loads them.

INSERT INTO accounts (name, token, properties, meta, planId) VALUES ('Test Account', 'testToken', '{}', '', 1);
INSERT INTO accounts (name, token, properties, meta, planId) VALUES ('Suspended Account', 'suspendedToken', '{"suspended":true}', '', 1);
INSERT INTO plans (name, properties) VALUES ('Test Plan', '{"connections":2,"totalBitrate":1064,"bitrate":500,"framerate":15,"audioBitrate":32,"width":640,"height":360}');
