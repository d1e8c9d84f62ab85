package meter

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua
var scriptFiles embed.FS

// The Redis store's scripts, each prepended with scripts/lib.lua.
var (
	scriptCharge   = loadScript("charge")
	scriptHold     = loadScript("hold")
	scriptExtend   = loadScript("extend")
	scriptSettle   = loadScript("settle")
	scriptRelease  = loadScript("release")
	scriptRefund   = loadScript("refund")
	scriptCancel   = loadScript("cancel")
	scriptTransfer = loadScript("transfer")
	scriptAccount  = loadScript("account")
	scriptLedger   = loadScript("ledger")
	scriptLease    = loadScript("lease")
	scriptUsage    = loadScript("usage")
	scriptPurchase = loadScript("purchase")
)

// scripts are all the scripts, for LoadScripts.
var scripts = []*redis.Script{
	scriptCharge, scriptHold, scriptExtend, scriptSettle, scriptRelease,
	scriptRefund, scriptCancel, scriptTransfer, scriptAccount, scriptLedger, scriptLease,
	scriptUsage, scriptPurchase,
}

func loadScript(name string) *redis.Script {
	lib, err := scriptFiles.ReadFile("scripts/lib.lua")
	if err != nil {
		panic(err)
	}
	body, err := scriptFiles.ReadFile("scripts/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(lib) + "\n" + string(body))
}
