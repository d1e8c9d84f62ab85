-- charge.lua: takes a request's price from the account's balance.
--
-- KEYS[1..5] the account (lib.lua); KEYS[6] the op record.
-- ARGV[1..3] common (lib.lua); ARGV[4] op; ARGV[5] amount; ARGV[6] sign-up
-- bonus; ARGV[7] method; ARGV[8] route; ARGV[9] the price line usage
-- counts it under.
--
-- Reply: {'OK', charged, 0, balance, 0, 0, replayed}, or an error reply
-- (lib.lua). A repeated op replies with its first result.

local function run()
	local op, amount, bonus = ARGV[4], int(ARGV[5]), int(ARGV[6])
	if not amount or amount < 1 then
		return invalid('amount must be an integer in [1, 2^53-1]')
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
	rec, err = oprecord('c', false)
	if err then
		return err
	end
	if rec then
		return receipt(rec.a, 0, rec.b, 0, 0, true)
	end
	local bal = balance()
	if bal < amount then
		return short(bal, amount)
	end
	A.ch = A.ch + amount
	entry('charge', amount, op, 'm', ARGV[7], 'r', ARGV[8])
	use(ARGV[9], amount, 1)
	store({k = 'c', a = amount, b = balance(), u = ARGV[9]}, OPTTL)
	return receipt(amount, 0, balance(), 0, 0, false)
end

return finish(run())
