package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

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
	exitDrift        = 7 // verify found drift
)

// operatorCommands are credit, debit, balance, ledger, usage, accounts and verify,
// which talk to the admin API as caddy reload does.
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
		Use:   "ledger --account <id> [--limit 20] [--before <entry-id>] [--json]",
		Short: "Shows an account's latest ledger entries, newest first",
		Long: `Shows an account's ledger entries, newest first. For the page after
this one, pass the id of its last entry as --before.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			limit := fl.Int("limit")
			if limit < 1 || limit > meter.MaxLedgerLimit {
				return exitUsage, fmt.Errorf("bad --limit %d: from 1 to 1000", limit)
			}
			uri := "/accounts/" + url.PathEscape(fl.String("account")) + "/ledger?limit=" + strconv.Itoa(limit)
			if before := fl.String("before"); before != "" {
				uri += "&before=" + url.QueryEscape(before)
			}
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
	ledger.Flags().String("before", "", "show the entries older than this entry id")

	usage := &cobra.Command{
		Use:   "usage --account <id> [--by hour|day] [--from <RFC 3339>] [--to <RFC 3339>] [--json]",
		Short: "Shows what an account spent, by hour or by day",
		Long: `Shows what an account spent in UTC hours (kept 48 hours) or days (kept
90 days), oldest first: the tokens charged and the requests, net of refunds,
in total and by price line.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			by := fl.String("by")
			if _, ok := meter.ParsePeriod(by); !ok {
				return exitUsage, fmt.Errorf("bad --by %q: hour or day", by)
			}
			query := url.Values{"by": {by}}
			for _, name := range []string{"from", "to"} {
				if v := fl.String(name); v != "" {
					if _, err := time.Parse(time.RFC3339, v); err != nil {
						return exitUsage, fmt.Errorf("bad --%s %q: an RFC 3339 time, such as 2026-12-01T00:00:00Z", name, v)
					}
					query.Set(name, v)
				}
			}
			out, code, err := callAdmin(fl, "GET", "/accounts/"+url.PathEscape(fl.String("account"))+"/usage?"+query.Encode(), nil)
			if err != nil {
				return code, err
			}
			if fl.Bool("json") {
				return 0, printJSON(out)
			}
			var rep meter.UsageReport
			if err := json.Unmarshal(out, &rep); err != nil {
				return exitRefused, fmt.Errorf("reading the answer: %v", err)
			}
			for _, b := range rep.Buckets {
				fmt.Printf("%s  charged %10d  requests %8d ", b.Start.Format(time.RFC3339), b.Charged, b.Requests)
				for _, line := range slices.Sorted(maps.Keys(b.Routes)) {
					c := b.Routes[line]
					fmt.Printf("  %s %d/%d", line, c.Charged, c.Requests)
				}
				fmt.Println()
			}
			return 0, nil
		}),
	}
	usage.Flags().String("by", "hour", "the buckets: hour or day")
	usage.Flags().String("from", "", "the first bucket to show starts at or after this RFC 3339 time")
	usage.Flags().String("to", "", "the last bucket to show starts before this RFC 3339 time")

	cmds := []*cobra.Command{transfer("credit"), transfer("debit"), balance, ledger, usage}
	for _, cmd := range cmds {
		cmd.Flags().String("account", "", "the account id")
		cmd.Flags().Bool("json", false, "print the API's JSON answer")
	}
	cmds = append(cmds, accountsCommand(), verifyCommand())
	for _, cmd := range cmds {
		f := cmd.Flags()
		f.String("address", "", "the admin API's address (default: from --config, else localhost:2019)")
		f.String("config", "", "a config file to read the admin address from")
		f.String("adapter", "", "the adapter of --config")
	}
	return cmds
}

// accountsCommand lists every account, walking the pages of GET /accounts.
func accountsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "accounts [--limit 100] [--json]",
		Short: "Lists every account, one a line",
		Long: `Lists every account, one a line, walking every page of the account list.
The order is unspecified. --limit is the size of the pages asked for.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			limit := fl.Int("limit")
			if limit < 1 || limit > meter.MaxAccountsLimit {
				return exitUsage, fmt.Errorf("bad --limit %d: from 1 to 1000", limit)
			}
			seen := map[string]bool{}
			all := []string{}
			code, err := walkPages(fl, "/accounts", limit, func(body []byte) (*string, error) {
				var page meter.AccountPage
				if err := json.Unmarshal(body, &page); err != nil {
					return nil, err
				}
				for _, id := range page.Accounts {
					if seen[id] {
						continue
					}
					seen[id] = true
					if fl.Bool("json") {
						all = append(all, id)
					} else {
						fmt.Println(id)
					}
				}
				return page.Next, nil
			})
			if err != nil {
				return code, err
			}
			if fl.Bool("json") {
				out, _ := json.Marshal(map[string][]string{"accounts": all})
				return 0, printJSON(out)
			}
			return 0, nil
		}),
	}
	cmd.Flags().Int("limit", 100, "accounts asked for per page, from 1 to 1000")
	cmd.Flags().Bool("json", false, `print {"accounts":[…]}`)
	return cmd
}

// verifyPageSize is how many accounts verify asks to check per page.
const verifyPageSize = 100

// verifyCommand checks every account, or one, through GET /verify.
func verifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [--account <id>] [--json]",
		Short: "Checks every account's records against the ledger's invariants",
		Long: `Recomputes every invariant of every account (or of --account alone) from
the store's own records, changing nothing, and prints each drift found: the
account, the check and what it found. On a terminal, a progress line on
standard error counts the accounts checked.

Exits 0 when there is no drift, 7 when there is.`,
		Args: cobra.NoArgs,
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			human := !fl.Bool("json")
			var (
				found verifyResult
				code  int
				err   error
			)
			if account := fl.String("account"); account != "" {
				found, code, err = verifyOne(fl, account, human)
			} else {
				found, code, err = verifyEvery(fl, human)
			}
			if err != nil {
				return code, err
			}
			if human {
				noun := "accounts"
				if found.Checked == 1 {
					noun = "account"
				}
				fmt.Printf("checked %d %s: %d drift\n", found.Checked, noun, len(found.Drift))
			} else {
				out, _ := json.Marshal(found)
				if err := printJSON(out); err != nil {
					return exitRefused, err
				}
			}
			if len(found.Drift) > 0 {
				accounts := map[string]bool{}
				for _, d := range found.Drift {
					accounts[d.Account] = true
				}
				noun := "accounts"
				if len(accounts) == 1 {
					noun = "account"
				}
				return exitDrift, fmt.Errorf("drift found: %d, in %d %s", len(found.Drift), len(accounts), noun)
			}
			return 0, nil
		}),
	}
	cmd.Flags().String("account", "", "check this account alone")
	cmd.Flags().Bool("json", false, `print {"checked":n,"drift":[…]}`)
	return cmd
}

// verifyResult is what verify found.
type verifyResult struct {
	Checked int           `json:"checked"`
	Drift   []meter.Drift `json:"drift"`
}

// verifyOne checks one account through GET /accounts/{id}/verify, printing
// its drift when human is set. It returns an error with its exit code.
func verifyOne(fl caddycmd.Flags, account string, human bool) (verifyResult, int, error) {
	out, code, err := callAdmin(fl, "GET", "/accounts/"+url.PathEscape(account)+"/verify", nil)
	if err != nil {
		return verifyResult{}, code, err
	}
	var c meter.Check
	if err := json.Unmarshal(out, &c); err != nil {
		return verifyResult{}, exitRefused, fmt.Errorf("reading the answer: %v", err)
	}
	if human {
		printDrift(c.Drift)
	}
	return verifyResult{Checked: 1, Drift: c.Drift}, 0, nil
}

// verifyEvery checks every account, walking the pages of GET /verify,
// printing their drift as they come when human is set, and a progress line
// when standard error is a terminal. It returns an error with its exit code.
func verifyEvery(fl caddycmd.Flags, human bool) (verifyResult, int, error) {
	found := verifyResult{Drift: []meter.Drift{}}
	progress := term.IsTerminal(int(os.Stderr.Fd()))
	code, err := walkPages(fl, "/verify", verifyPageSize, func(body []byte) (*string, error) {
		var page meter.CheckPage
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, err
		}
		if progress {
			fmt.Fprint(os.Stderr, "\r\x1b[K")
		}
		if human {
			printDrift(page.Drift)
		}
		found.Checked += page.Checked
		found.Drift = append(found.Drift, page.Drift...)
		if progress {
			fmt.Fprintf(os.Stderr, "checked %d accounts, %d drift", found.Checked, len(found.Drift))
		}
		return page.Next, nil
	})
	if progress {
		fmt.Fprint(os.Stderr, "\r\x1b[K")
	}
	return found, code, err
}

// printDrift prints each drift on a line of its own.
func printDrift(drift []meter.Drift) {
	for _, d := range drift {
		fmt.Printf("%s  %s  %s\n", d.Account, d.Check, d.Detail)
	}
}

// walkPages gets every page of a listing of the operator API at path, from
// the first cursor to the last, limit a page, and hands each answer to page,
// which returns the next cursor. It returns an error with its exit code.
func walkPages(fl caddycmd.Flags, path string, limit int, page func(body []byte) (next *string, err error)) (int, error) {
	cursor := ""
	for {
		out, code, err := callAdmin(fl, "GET", path+"?limit="+strconv.Itoa(limit)+"&cursor="+url.QueryEscape(cursor), nil)
		if err != nil {
			return code, err
		}
		next, err := page(out)
		if err != nil {
			return exitRefused, fmt.Errorf("reading the answer: %v", err)
		}
		if next == nil {
			return 0, nil
		}
		cursor = *next
	}
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
