-- settle.lua: charges amount of an open hold, at most what it holds, and
-- releases the rest, in one settle entry.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] amount; ARGV[6] cut off,
-- "0" or "1".
--
-- Reply: {'OK', charged, 0, balance, released, 0, replayed}, or an error
-- reply (lib.lua). Repeating a settle with the same values replies with its
-- first result; with other values it is a conflict.

local function run()
	local op, amount, cutoff = ARGV[4], int(ARGV[5]), ARGV[6]
	if not amount then
		return invalid('amount must be an integer in [0, 2^53-1]')
	end
	if cutoff ~= '0' and cutoff ~= '1' then
		return invalid('cut off must be 0 or 1')
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
	if rec.s == 's' then
		if rec.sa ~= amount or rec.sc ~= cutoff then
			return {'CONFLICT', 'the hold was settled with other values'}
		end
		return receipt(amount, 0, rec.sb, rec.sr, 0, true)
	end
	local held = redis.call('HGET', KEYS[3], op)
	if rec.s ~= 'o' or not held then
		return {'GONE'}
	end
	if amount > tonumber(held) then
		return invalid('settle amount exceeds the hold')
	end
	local released = closehold(op) - amount
	A.ch = A.ch + amount
	entry('settle', amount, op, 'rl', fmt(released), 'co', cutoff)
	use(rec.u or '', amount, 1)
	rec.s, rec.sa, rec.sc, rec.sr, rec.sb = 's', amount, cutoff, released, balance()
	store(rec, OPTTL)
	return receipt(amount, 0, balance(), released, 0, false)
end

return finish(run())
