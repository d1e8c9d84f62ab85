package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/meter"
)

// Exit codes of the operator commands, one for each kind of failure.
const (
	exitUnreachable  = 1 // the admin API could not be reached
	exitUsage        = 2 // a bad flag, such as a bad amount
	exitNotFound     = 3 // the account was never seen
	exitConflict     = 4 // the id was used with other values
	exitInsufficient = 5 // a debit above the balance
	exitRefused      = 6 // any other refusal
)

// operatorCommands are credit, debit, balance and ledger, which talk to the
// admin API as caddy reload does.
func operatorCommands() []*cobra.Command {
	transfer := func(kind string) *cobra.Command {
		cmd := &cobra.Command{
			Use:   kind + " --account <id> --amount <n> --id <id> [--reason <text>] [--json]",
			Short: strings.ToUpper(kind[:1]) + kind[1:] + "s tokens to an account, under your own id",
			Long: `Sends the ` + kind + ` to the operator API of a running Caddy. The id (an
order or payment id) makes it safe to repeat: the same id with the same amount
and reason changes nothing again.`,
			Args: cobra.NoArgs,
			RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				account, amount := fl.String("account"), fl.String("amount")
				if !meter.ValidAccount(account) {
					return exitUsage, errors.New("bad --account: 1-128 printable ASCII bytes without spaces, and not . or ..")
				}
				if n, err := strconv.ParseInt(amount, 10, 64); err != nil || n < 1 || n > meter.MaxAmount || amount != strconv.FormatInt(n, 10) {
					return exitUsage, fmt.Errorf("bad amount %q: a whole number from 1 to 2^53-1", amount)
				}
				if fl.String("id") == "" {
					return exitUsage, errors.New("--id is required: your order or payment id")
				}
				body, _ := json.Marshal(map[string]any{"amount": json.Number(amount), "id": fl.String("id"), "reason": fl.String("reason")})
				out, code, err := callAdmin(fl, "POST", "/accounts/"+url.PathEscape(account)+"/"+kind, strings.NewReader(string(body)))
				if err != nil {
					return code, err
				}
				if fl.Bool("json") {
					return 0, printJSON(out)
				}
				var r meter.TransferReceipt
				if err := json.Unmarshal(out, &r); err != nil {
					return exitRefused, fmt.Errorf("reading the answer: %v", err)
				}
				verb := map[string]string{"credit": "credited", "debit": "debited"}[kind]
				if r.Replayed {
					verb = "already " + verb
				}
				fmt.Printf("%s %d to %s (%s): balance %d\n", verb, r.Entry.Amount, r.Account, r.Entry.Op, r.Balance)
				return 0, nil
			}),
		}
		cmd.Flags().String("amount", "", "whole tokens, from 1 to 2^53-1")
		cmd.Flags().String("id", "", "your id for this "+kind+", such as an order id")
		cmd.Flags().String("reason", "", "a note kept in the ledger")
		return cmd
	}

	balance := &cobra.Command{
		Use:   "balance --account <id> [--json]",
		Short: "Shows an account's balance and totals",
		Args:  cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			out, code, err := callAdmin(fl, "GET", "/accounts/"+url.PathEscape(fl.String("account")), nil)
			if err != nil {
				return code, err
			}
			if fl.Bool("json") {
				return 0, printJSON(out)
			}
			var a meter.Account
			if err := json.Unmarshal(out, &a); err != nil {
				return exitRefused, fmt.Errorf("reading the answer: %v", err)
			}
			fmt.Printf("%s: balance %d, held %d (credited %d, charged %d, debited %d, refunded %d)\n",
				a.Account, a.Balance, a.Held, a.Credited, a.Charged, a.Debited, a.Refunded)
			return 0, nil
		}),
	}

	ledger := &cobra.Command{
		Use:   "ledger --account <id> [--limit 20] [--json]",
		Short: "Shows an account's latest ledger entries, newest first",
		Args:  cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			limit := fl.Int("limit")
			if limit < 1 || limit > meter.MaxLedgerLimit {
				return exitUsage, fmt.Errorf("bad --limit %d: from 1 to 1000", limit)
			}
			uri := "/accounts/" + url.PathEscape(fl.String("account")) + "/ledger?limit=" + strconv.Itoa(limit)
			out, code, err := callAdmin(fl, "GET", uri, nil)
			if err != nil {
				return code, err
			}
			if fl.Bool("json") {
				return 0, printJSON(out)
			}
			var page struct {
				Entries []json.RawMessage `json:"entries"`
			}
			if err := json.Unmarshal(out, &page); err != nil {
				return exitRefused, fmt.Errorf("reading the answer: %v", err)
			}
			for _, raw := range page.Entries {
				var e struct {
					ID, Time, Kind, Op string
					Amount, Balance    int64
					Detail             map[string]any
				}
				_ = json.Unmarshal(raw, &e)
				detail, _ := json.Marshal(e.Detail)
				fmt.Printf("%s  %-24s  %-7s  %10d  %10d  %s  %s\n", e.Time, e.ID, e.Kind, e.Amount, e.Balance, e.Op, detail)
			}
			return 0, nil
		}),
	}
	ledger.Flags().Int("limit", 20, "how many entries, from 1 to 1000")

	cmds := []*cobra.Command{transfer("credit"), transfer("debit"), balance, ledger}
	for _, cmd := range cmds {
		f := cmd.Flags()
		f.String("account", "", "the account id")
		f.Bool("json", false, "print the API's JSON answer")
		f.String("address", "", "the admin API's address (default: from --config, else localhost:2019)")
		f.String("config", "", "a config file to read the admin address from")
		f.String("adapter", "", "the adapter of --config")
	}
	return cmds
}

// adminError is how caddycmd.AdminAPIRequest reports an error answer.
var adminError = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// callAdmin sends a request to the operator API and returns the answer's
// body, or an error with its exit code.
func callAdmin(fl caddycmd.Flags, method, path string, body io.Reader) ([]byte, int, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, exitUsage, fmt.Errorf("finding the admin API: %v", err)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, "/tollgate"+path, nil, body)
	if err != nil {
		m := adminError.FindStringSubmatch(err.Error())
		if m == nil {
			return nil, exitUnreachable, fmt.Errorf("cannot reach the admin API at %s: %v", addr, err)
		}
		var p problem
		_ = json.Unmarshal([]byte(m[2]), &p)
		switch m[1] {
		case "404":
			return nil, exitNotFound, fmt.Errorf("unknown account: %s", p.Detail)
		case "409":
			return nil, exitConflict, fmt.Errorf("conflict: %s", p.Detail)
		case "402":
			return nil, exitInsufficient, fmt.Errorf("insufficient balance: %s", p.Detail)
		case "400":
			return nil, exitUsage, fmt.Errorf("refused: %s", p.Detail)
		}
		return nil, exitRefused, fmt.Errorf("the admin API answered %s: %s", m[1], strings.TrimSpace(p.Detail+" "+p.Title))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, exitUnreachable, fmt.Errorf("reading the answer: %v", err)
	}
	return out, 0, nil
}

// printJSON prints an answer as it came.
func printJSON(b []byte) error {
	_, err := fmt.Println(strings.TrimSpace(string(b)))
	return err
}
