-- lib.lua: helpers prepended to every script of this directory.
--
-- Every script works on one account, whose keys share a hash slot:
--   KEYS[1] the account hash: cr, ch, de, rf, hd (the running totals
--           credited, charged, debited, refunded and held), ct (created, in
--           ms on Redis's clock), ar ("1" once the caller has arrived), nx
--           (no open hold expires before this time in ms; 0 for none), dr
--           (when a request was last refused for the balance while tokens
--           were held) and dp (when a refusal last reported the account
--           depleted), both in ms
--   KEYS[2] the ledger stream, trimmed to at least the retention; each
--           entry's id carries its time in ms, and its fields are k (kind),
--           a (amount), b (balance after), o (op or id) and the detail
--           fields m (method), r (route), rl (released), co (cut off, "0" or
--           "1"), rs (reason), by, n (the requests a lease's charge or refund
--           covers), l (the lease a charge was paid from) and sf (what a
--           debit could not take)
--   KEYS[3] the open holds hash: op -> amount held
--   KEYS[4] the hold expiry sorted set: op scored by its expiry in ms
--   KEYS[5] the usage hash: h<n> for the nth hour since the epoch and d<n>
--           for the nth day, each a MessagePack map of price line ->
--           {tokens charged, requests}, both net of refunds
--   KEYS[6] when a script names it, the record of a request op or of a
--           credit or debit id: a MessagePack map, so one GET reads it and
--           one SET writes it with its time to live
--
-- Every script takes three common arguments:
--   ARGV[1] a deadline in ms on Redis's clock after which the script refuses
--           to change anything (0 for none)
--   ARGV[2] how many ledger entries to keep, at least
--   ARGV[3] how long, in ms, a closed request op is remembered
--
-- A reply that changed the account's balance + held ends with 'MOVED', that
-- sum before and after: the store reports the crossing of a threshold from
-- the one operation that crossed it.
--
-- Error replies, shared by every script:
--   {'INVALID', reason}         an argument was refused; nothing was written
--   {'DEADLINE'}                the deadline had passed; nothing was written
--   {'INSUFFICIENT', balance, price, held, depleted} depleted is 1 for the
--                               first refusal of the account in an hour
--   {'CONFLICT', reason}        an op or id reused with other values
--   {'NOTFOUND', reason}
--   {'GONE'}                    the hold was settled, released or expired
--   {'CANCELLED'}               the op was cancelled
--
-- Scripts validate every argument before their first write: Lua does not
-- roll back.

local MAX = 9007199254740991

-- int parses a decimal integer in [0, MAX] strictly, or returns nil.
local function int(v)
	if type(v) ~= 'string' or #v < 1 or #v > 16 or not string.find(v, '^%d+$') then
		return nil
	end
	if #v > 1 and string.byte(v, 1) == 48 then
		return nil
	end
	local n = tonumber(v)
	if n > MAX then
		return nil
	end
	return n
end

-- fmt writes an integer without an exponent.
local function fmt(n)
	return string.format('%d', n)
end

local function invalid(reason)
	return {'INVALID', reason}
end

local DEADLINE, RETENTION, OPTTL = int(ARGV[1]), int(ARGV[2]), int(ARGV[3])

-- A is the account, loaded by begin and written back by finish.
local A
-- NOW is Redis's clock in ms, read by begin.
local NOW

local function balance()
	return A.cr - A.ch - A.de + A.rf - A.hd
end

-- worth is what the account has, held tokens included: balance + held.
local function worth()
	return A.cr - A.ch - A.de + A.rf
end

-- entry appends a ledger entry with the current balance and returns its id.
local function entry(kind, amount, op, ...)
	A.dirty = true
	return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'k', kind, 'a', fmt(amount), 'b', fmt(balance()), 'o', op, ...)
end

-- create makes the account exist.
local function create()
	if not A.exists then
		A.exists, A.ct, A.dirty = true, NOW, true
	end
end

-- arrive records the caller's first operation, crediting the bonus once.
local function arrive(bonus)
	create()
	if A.ar then
		return
	end
	A.ar, A.dirty = true, true
	if bonus > 0 and A.cr + bonus <= MAX and balance() + A.hd + bonus <= MAX then
		A.cr = A.cr + bonus
		entry('credit', bonus, 'signup_bonus', 'rs', 'signup_bonus', 'by', 'tollgate')
	end
end

-- closehold removes an open hold from the account and returns its amount.
local function closehold(op)
	local held = tonumber(redis.call('HGET', KEYS[3], op) or '0')
	redis.call('HDEL', KEYS[3], op)
	redis.call('ZREM', KEYS[4], op)
	A.hd = A.hd - held
	return held
end

-- begin checks the common arguments and the deadline, loads the account and
-- releases its expired holds. It returns an error reply, or nil.
local function begin()
	if not DEADLINE or not RETENTION or RETENTION < 1 or not OPTTL or OPTTL < 1 then
		return invalid('bad common arguments')
	end
	local t = redis.call('TIME')
	NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	if DEADLINE > 0 and NOW > DEADLINE then
		return {'DEADLINE'}
	end
	local v = redis.call('HMGET', KEYS[1], 'cr', 'ch', 'de', 'rf', 'hd', 'ct', 'ar', 'nx', 'dr', 'dp')
	A = {
		cr = tonumber(v[1] or '0'), ch = tonumber(v[2] or '0'), de = tonumber(v[3] or '0'),
		rf = tonumber(v[4] or '0'), hd = tonumber(v[5] or '0'), ct = tonumber(v[6] or '0'),
		ar = v[7] == '1', nx = tonumber(v[8] or '0'), dr = tonumber(v[9] or '0'),
		dp = tonumber(v[10] or '0'), exists = v[6] ~= false, dirty = false,
	}
	A.v0 = worth()
	if A.nx > 0 and A.nx <= NOW then
		local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', NOW)
		for i = 1, #expired do
			local held = closehold(expired[i])
			entry('release', held, expired[i], 'rs', 'expired')
		end
		local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
		A.nx, A.dirty = tonumber(first[2] or '0'), true
	end
	return nil
end

-- open begins a read in mode: "caller" records the caller's arrival,
-- crediting bonus; "operator" refuses an account never seen. It returns an
-- error reply, or nil.
local function open(mode, bonus)
	if (mode ~= 'caller' and mode ~= 'operator') or not bonus then
		return invalid('mode must be caller or operator, with a bonus in [0, 2^53-1]')
	end
	local err = begin()
	if err then
		return err
	end
	if mode == 'caller' then
		arrive(bonus)
	elseif not A.exists then
		return {'NOTFOUND', 'account was never seen'}
	end
	return nil
end

-- schedule records that an open hold expires at expires.
local function schedule(op, expires)
	redis.call('ZADD', KEYS[4], fmt(expires), op)
	if A.nx == 0 or expires < A.nx then
		A.nx, A.dirty = expires, true
	end
end

-- finish writes the account back if it changed, and returns the reply.
local function finish(reply)
	if A and A.dirty then
		redis.call('HSET', KEYS[1], 'cr', fmt(A.cr), 'ch', fmt(A.ch), 'de', fmt(A.de),
			'rf', fmt(A.rf), 'hd', fmt(A.hd), 'ct', fmt(A.ct), 'ar', A.ar and '1' or '0',
			'nx', fmt(A.nx), 'dr', fmt(A.dr), 'dp', fmt(A.dp))
		local v1 = worth()
		if v1 ~= A.v0 and reply[1] == 'OK' then
			reply[#reply + 1] = 'MOVED'
			reply[#reply + 1] = A.v0
			reply[#reply + 1] = v1
		end
	end
	return reply
end

-- short refuses a request for the balance. While tokens are held, it marks
-- the account as draining, so that lease holders give back what they do
-- not need.
local function short(bal, price)
	if A.hd > 0 then
		A.dr, A.dirty = NOW, true
	end
	local depleted = 0
	if NOW - A.dp >= 3600000 then
		A.dp, A.dirty, depleted = NOW, true, 1
	end
	return {'INSUFFICIENT', bal, price, A.hd, depleted}
end

-- Usage buckets kept besides the current one: hours and days (usage.go).
local PERIODS = {{'h', 3600000, 48}, {'d', 86400000, 90}}

-- use adds charged tokens and requests (below 0 for a refund) to the
-- account's usage of line, in the hour and the day of NOW. A new bucket
-- drops those of its period that fell out of the retention.
local function use(line, charged, requests)
	if line == '' then
		line = '*'
	end
	for _, p in ipairs(PERIODS) do
		local n = math.floor(NOW / p[2])
		local field = p[1] .. fmt(n)
		local v = redis.call('HGET', KEYS[5], field)
		local routes
		if v then
			routes = cmsgpack.unpack(v)
		else
			routes = {}
			local fields = redis.call('HKEYS', KEYS[5])
			for i = 1, #fields do
				local f = fields[i]
				if string.sub(f, 1, 1) == p[1] and tonumber(string.sub(f, 2)) <= n - p[3] - 1 then
					redis.call('HDEL', KEYS[5], f)
				end
			end
		end
		local c = routes[line] or {0, 0}
		routes[line] = {c[1] + charged, c[2] + requests}
		redis.call('HSET', KEYS[5], field, cmsgpack.pack(routes))
	end
end

-- receipt is the reply of a request operation.
local function receipt(amount, held, bal, released, expires, replayed)
	return {'OK', amount, held, bal, released, expires, replayed and 1 or 0}
end

-- record reads the record in KEYS[6], or returns nil.
local function record()
	local v = redis.call('GET', KEYS[6])
	if not v then
		return nil
	end
	return cmsgpack.unpack(v)
end

-- store writes the record in KEYS[6], to live ttl ms, or as long as it did
-- when ttl is nil, or for ever when ttl is 0.
local function store(rec, ttl)
	if ttl == nil then
		redis.call('SET', KEYS[6], cmsgpack.pack(rec), 'KEEPTTL')
	elseif ttl == 0 then
		redis.call('SET', KEYS[6], cmsgpack.pack(rec))
	else
		redis.call('SET', KEYS[6], cmsgpack.pack(rec), 'PX', fmt(ttl))
	end
end

-- oprecord reads the op record: k is its kind (c charge, h hold, x the
-- tombstone of a cancel before apply) and x is true once it was cancelled.
-- It returns the record, and an error reply when the op is missing (if
-- required), cancelled, or of another kind than want.
local function oprecord(want, required)
	local rec = record()
	if not rec then
		if required then
			return nil, {'NOTFOUND', 'no such op'}
		end
		return nil, nil
	end
	if rec.k == 'x' or rec.x then
		return rec, {'CANCELLED'}
	end
	if want and rec.k ~= want then
		return rec, {'CONFLICT', 'op was used for another kind of operation'}
	end
	return rec, nil
end
