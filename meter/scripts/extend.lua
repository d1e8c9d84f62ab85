-- extend.lua: adds up to max tokens, and at least min, to an open hold and
-- renews its expiry. max 0 only renews. A renewal that adds nothing writes no
-- ledger entry.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] sequence number;
-- ARGV[6] max; ARGV[7] min; ARGV[8] ttl in ms.
--
-- Reply: {'OK', added, held, balance, 0, expires, replayed}, or an error
-- reply (lib.lua). Repeating the last sequence number replies with its first
-- result; an older one replies with the hold as it is, changing nothing.

local function run()
	local op, seq, max, min, ttl = ARGV[4], int(ARGV[5]), int(ARGV[6]), int(ARGV[7]), int(ARGV[8])
	if not seq or seq < 1 then
		return invalid('seq must be an integer in [1, 2^53-1]')
	end
	if not max or not min or min > max or (max > 0 and min < 1) then
		return invalid('max and min must be integers with min <= max, and min >= 1 when max > 0')
	end
	if not ttl or ttl < 1 then
		return invalid('ttl must be a positive integer')
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
	local held = redis.call('HGET', KEYS[3], op)
	if rec.s ~= 'o' or not held then
		return {'GONE'}
	end
	held = tonumber(held)
	if seq == rec.q then
		return receipt(rec.qa, rec.qh, rec.qb, 0, rec.qe, true)
	elseif seq < rec.q then
		return receipt(0, held, balance(), 0, tonumber(redis.call('ZSCORE', KEYS[4], op)), true)
	end
	local bal = balance()
	local add = math.min(max, bal)
	if add < min then
		return {'INSUFFICIENT', bal, min, A.hd}
	end
	local expires = NOW + ttl
	held = held + add
	schedule(op, expires)
	if add > 0 then
		A.hd = A.hd + add
		redis.call('HSET', KEYS[3], op, fmt(held))
		entry('hold', add, op, 'm', rec.m, 'r', rec.r)
	end
	rec.q, rec.qa, rec.qh, rec.qb, rec.qe = seq, add, held, balance(), expires
	store(rec, ttl + OPTTL)
	return receipt(add, held, balance(), 0, expires, false)
end

return finish(run())
