-- cancel.lua: makes an op as if it never happened. A charge that applied is
-- refunded (what is left of it after refunds) and an open hold released,
-- both with reason not_forwarded; an op that has not applied is tombstoned,
-- so a later apply changes nothing. The account is not created.
--
-- KEYS[1..4] the account (lib.lua); KEYS[5] the op record.
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
	local v = redis.call('HMGET', KEYS[5], 'k', 'x', 's', 'a', 'sa', 'fa', 'ca', 'cb')
	local kind, cancelled, state, charged, settled, refunded = v[1], v[2], v[3], v[4], v[5], v[6]
	if kind == 'x' or cancelled == '1' then
		return receipt(tonumber(v[7]), 0, tonumber(v[8]), 0, 0, true)
	end
	local back = 0
	if not kind then
		redis.call('HSET', KEYS[5], 'k', 'x')
	elseif kind == 'h' and state == 'o' and redis.call('HGET', KEYS[3], op) then
		back = closehold(op)
		entry('release', back, op, 'rs', 'not_forwarded')
	else
		if kind == 'c' then
			back = tonumber(charged)
		elseif state == 's' then
			back = tonumber(settled)
		end
		back = back - tonumber(refunded or '0')
		if back > 0 then
			A.rf = A.rf + back
			entry('refund', back, op, 'rs', 'not_forwarded')
		else
			back = 0
		end
	end
	redis.call('HSET', KEYS[5], 'x', '1', 'ca', fmt(back), 'cb', fmt(balance()))
	redis.call('PEXPIRE', KEYS[5], fmt(OPTTL))
	return receipt(back, 0, balance(), 0, 0, false)
end

return finish(run())
