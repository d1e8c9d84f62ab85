-- hold.lua: sets aside up to max tokens, and at least min, for a request
-- whose final price is not known yet.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] max; ARGV[6] min;
-- ARGV[7] ttl in ms; ARGV[8] sign-up bonus; ARGV[9] method; ARGV[10] route;
-- ARGV[11] the price line usage counts its settle under.
--
-- Reply: {'OK', held, held, balance, 0, expires, replayed}, or an error
-- reply (lib.lua). A repeated op replies with its first result.

local function run()
	local op, max, min, ttl, bonus = ARGV[4], int(ARGV[5]), int(ARGV[6]), int(ARGV[7]), int(ARGV[8])
	if not max or max < 1 or not min or min < 1 or min > max then
		return invalid('max and min must be integers with 1 <= min <= max <= 2^53-1')
	end
	if not ttl or ttl < 1 then
		return invalid('ttl must be a positive integer')
	end
	if not bonus then
		return invalid('bonus must be an integer in [0, 2^53-1]')
	end
	local err = begin()
	if err then
		return err
	end
	arrive(bonus)
	local rec
	rec, err = oprecord('h', false)
	if err then
		return err
	end
	if rec then
		return receipt(rec.a, rec.a, rec.b, 0, rec.e, true)
	end
	local bal = balance()
	local add = math.min(max, bal)
	if add < min then
		return short(bal, min)
	end
	local expires = NOW + ttl
	A.hd = A.hd + add
	redis.call('HSET', KEYS[3], op, fmt(add))
	schedule(op, expires)
	entry('hold', add, op, 'm', ARGV[9], 'r', ARGV[10])
	store({k = 'h', s = 'o', a = add, b = balance(), e = expires, m = ARGV[9], r = ARGV[10], u = ARGV[11], q = 0}, ttl + OPTTL)
	return receipt(add, add, balance(), 0, expires, false)
end

return finish(run())
