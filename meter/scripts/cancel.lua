-- cancel.lua: makes an op as if it never happened. A charge that applied is
-- refunded (what is left of it after refunds) and an open hold released,
-- both with reason not_forwarded; an op that has not applied is tombstoned,
-- so a later apply changes nothing. The account is not created.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op.
--
-- Reply: {'OK', given back, 0, balance, 0, 0, replayed}, or an error reply
-- (lib.lua). A repeated cancel replies with its first result.

local function run()
	local op = ARGV[4]
	local err = begin()
	if err then
		return err
	end
	local rec = record()
	if rec and (rec.k == 'x' or rec.x) then
		return receipt(rec.ca, 0, rec.cb, 0, 0, true)
	end
	local back = 0
	if not rec then
		rec = {k = 'x'}
	elseif rec.k == 'h' and rec.s == 'o' and redis.call('HGET', KEYS[3], op) then
		back = closehold(op)
		entry('release', back, op, 'rs', 'not_forwarded')
	else
		if rec.k == 'c' then
			back = rec.a
		elseif rec.s == 's' then
			back = rec.sa
		end
		back = back - (rec.fa or 0)
		if back > 0 then
			A.rf = A.rf + back
			entry('refund', back, op, 'rs', 'not_forwarded')
			use(rec.u or '', -back, -1)
		else
			back = 0
		end
	end
	rec.x, rec.ca, rec.cb = true, back, balance()
	store(rec, OPTTL)
	return receipt(back, 0, balance(), 0, 0, false)
end

return finish(run())
