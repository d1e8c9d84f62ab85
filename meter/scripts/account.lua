-- account.lua: reads an account's totals. A caller's read creates the
-- account and records the caller's arrival, crediting the bonus; an
-- operator's read never creates one.
--
-- KEYS[1..5] the account (lib.lua).
-- ARGV[1..3] common (lib.lua); ARGV[4] mode, "caller" or "operator";
-- ARGV[5] sign-up bonus.
--
-- Reply: {'OK', credited, charged, debited, refunded, held, created in ms},
-- or an error reply (lib.lua).

local function run()
	local err = open(ARGV[4], int(ARGV[5]))
	if err then
		return err
	end
	return {'OK', A.cr, A.ch, A.de, A.rf, A.hd, A.ct}
end

return finish(run())
