-- release.lua: releases an open hold in full.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] reason, "refund_on" or
-- "not_forwarded".
--
-- Reply: {'OK', released, 0, balance, 0, 0, replayed}, or an error reply
-- (lib.lua). A repeated release replies with its first result.

local function run()
	local op, reason = ARGV[4], ARGV[5]
	if reason ~= 'refund_on' and reason ~= 'not_forwarded' then
		return invalid('reason must be refund_on or not_forwarded')
	end
	local err = begin()
	if err then
		return err
	end
	local rec
	rec, err = oprecord('h', true)
	if err then
		return err
	end
	if rec.s == 'r' then
		return receipt(rec.la, 0, rec.lb, 0, 0, true)
	end
	if rec.s ~= 'o' or not redis.call('HGET', KEYS[3], op) then
		return {'GONE'}
	end
	local held = closehold(op)
	entry('release', held, op, 'rs', reason)
	rec.s, rec.la, rec.lb = 'r', held, balance()
	store(rec, OPTTL)
	return receipt(held, 0, balance(), 0, 0, false)
end

return finish(run())
