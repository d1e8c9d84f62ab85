// The caller's dashboard. It talks only to the account API beside it (…/),
// and shows everything the server sends as text, never as HTML.
"use strict";

const KEY = "tollgate-token";
const CHECKOUT_AT = "tollgate-checkout-at";
const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const SVG = "http://www.w3.org/2000/svg";

let token = sessionStorage.getItem(KEY) || "";
let ledgerNext = ""; // the "before" of the page after the one shown

// api reads one of the account API's answers, with the pasted token if
// there is one, else with whatever credentials the browser has.
async function api(path, init = {}) {
	const headers = new Headers(init.headers || {});
	if (token) headers.set("Authorization", "Bearer " + token);
	const resp = await fetch(path, { ...init, headers, credentials: "same-origin", cache: "no-store", redirect: "error" });
	let body = null;
	try { body = await resp.json(); } catch (_) { /* not JSON */ }
	return { status: resp.status, body };
}

function text(el, value) {
	el.textContent = value;
	return el;
}

function cell(row, value, cls) {
	const td = text(document.createElement("td"), value);
	if (cls) td.className = cls;
	row.appendChild(td);
	return td;
}

function showError(msg) {
	text($("error"), msg || "");
}

async function start() {
	$("token-form").addEventListener("submit", (e) => {
		e.preventDefault();
		token = $("token").value.trim();
		$("token").value = "";
		sessionStorage.setItem(KEY, token);
		load();
	});
	$("signout").addEventListener("click", () => {
		sessionStorage.removeItem(KEY);
		token = "";
		$("account").hidden = true;
		$("signout").hidden = true;
		$("signin").hidden = false;
		text($("who"), "");
	});
	$("older").addEventListener("click", () => loadLedger(ledgerNext));
	$("newest").addEventListener("click", () => loadLedger(""));
	await load();
}

// load shows the account, or the sign-in form when no credentials work.
async function load() {
	showError("");
	const bal = await api("balance");
	if (bal.status === 401 || bal.status === 403) {
		if (token) text($("signin-error"), "That token was refused.");
		sessionStorage.removeItem(KEY);
		token = "";
		$("account").hidden = true;
		$("signin").hidden = false;
		return;
	}
	if (bal.status !== 200 || !bal.body) {
		showError("The account could not be read (" + bal.status + "). Try again shortly.");
		return;
	}
	text($("signin-error"), "");
	$("signin").hidden = true;
	$("account").hidden = false;
	$("signout").hidden = !token;
	text($("who"), "Account " + bal.body.account);
	showBalance(bal.body);
	await Promise.all([loadUsage(), loadPrices(), loadLedger("")]);
	watchPurchase();
}

function showBalance(b) {
	text($("balance"), fmt.format(b.balance));
	text($("held"), fmt.format(b.held));
}

function utcDay(d) {
	return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

async function loadUsage() {
	const now = new Date();
	const dayFrom = new Date(utcDay(now) - 29 * 86400000);
	const monthFrom = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
	const from = dayFrom < monthFrom ? dayFrom : monthFrom;
	const hourFrom = new Date(Math.floor(now.getTime() / 3600000) * 3600000 - 47 * 3600000);
	const [days, hours] = await Promise.all([
		api("usage?by=day&from=" + encodeURIComponent(from.toISOString().replace(/\.\d+Z$/, "Z"))),
		api("usage?by=hour&from=" + encodeURIComponent(hourFrom.toISOString().replace(/\.\d+Z$/, "Z"))),
	]);
	if (days.status !== 200 || hours.status !== 200) {
		showError("Spending could not be read. Try again shortly.");
		return;
	}
	const today = utcDay(now);
	let spentToday = 0, spentMonth = 0;
	const routes = new Map();
	for (const b of days.body.buckets) {
		const start = Date.parse(b.start);
		if (start === today) spentToday += b.charged;
		if (start >= monthFrom.getTime()) spentMonth += b.charged;
		if (start >= dayFrom.getTime()) {
			for (const [route, c] of Object.entries(b.routes)) {
				const r = routes.get(route) || { charged: 0, requests: 0 };
				r.charged += c.charged;
				r.requests += c.requests;
				routes.set(route, r);
			}
		}
	}
	text($("today"), fmt.format(spentToday));
	text($("month"), fmt.format(spentMonth));
	chart($("chart-hours"), hours.body.buckets, hourFrom.getTime(), 3600000, 48, (d) => String(d.getUTCHours()).padStart(2, "0") + "h");
	chart($("chart-days"), days.body.buckets, dayFrom.getTime(), 86400000, 30, (d) => (d.getUTCMonth() + 1) + "/" + d.getUTCDate());
	const tbody = $("routes").tBodies[0];
	tbody.replaceChildren();
	for (const [route, r] of [...routes.entries()].sort((a, b) => b[1].charged - a[1].charged)) {
		const row = tbody.insertRow();
		cell(row, route);
		cell(row, fmt.format(r.charged), "num");
		cell(row, fmt.format(r.requests), "num");
	}
}

// chart draws one bar per period of width step from first, n of them, each
// as tall as what the buckets say was spent in it.
function chart(el, buckets, first, step, n, label) {
	const spent = new Map(buckets.map((b) => [Date.parse(b.start), b.charged]));
	const values = [];
	for (let i = 0; i < n; i++) values.push([first + i * step, spent.get(first + i * step) || 0]);
	const max = Math.max(1, ...values.map((v) => v[1]));
	const w = 600, h = 160, pad = 16, bw = (w - 2) / n;
	const svg = document.createElementNS(SVG, "svg");
	svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
	svg.setAttribute("preserveAspectRatio", "none");
	svg.setAttribute("role", "img");
	const axis = document.createElementNS(SVG, "line");
	axis.setAttribute("x1", "0"); axis.setAttribute("x2", String(w));
	axis.setAttribute("y1", String(h - pad)); axis.setAttribute("y2", String(h - pad));
	svg.appendChild(axis);
	values.forEach(([start, charged], i) => {
		const bh = charged > 0 ? Math.max(1, (h - 2 * pad) * charged / max) : 0;
		const r = document.createElementNS(SVG, "rect");
		r.setAttribute("x", String(1 + i * bw + bw * 0.1));
		r.setAttribute("width", String(bw * 0.8));
		r.setAttribute("y", String(h - pad - bh));
		r.setAttribute("height", String(bh));
		r.dataset.start = new Date(start).toISOString();
		r.dataset.charged = String(charged);
		const title = document.createElementNS(SVG, "title");
		title.textContent = new Date(start).toISOString().slice(0, 16).replace("T", " ") + " UTC: " + fmt.format(charged);
		r.appendChild(title);
		svg.appendChild(r);
		if (i % Math.ceil(n / 8) === 0) {
			const t = document.createElementNS(SVG, "text");
			t.setAttribute("x", String(1 + i * bw));
			t.setAttribute("y", String(h - 3));
			t.textContent = label(new Date(start));
			svg.appendChild(t);
		}
	});
	const peak = document.createElementNS(SVG, "text");
	peak.setAttribute("x", "2"); peak.setAttribute("y", "10");
	peak.textContent = "max " + fmt.format(max);
	svg.appendChild(peak);
	el.replaceChildren(svg);
}

async function loadPrices() {
	const p = await api("prices");
	if (p.status !== 200) return;
	const tbody = $("prices").tBodies[0];
	tbody.replaceChildren();
	for (const line of p.body.prices) {
		const row = tbody.insertRow();
		cell(row, line.route);
		cell(row, line.compound ? describe(line.compound) : fmt.format(line.amount) + " a request");
	}
	const bundles = $("bundles");
	bundles.replaceChildren();
	for (const b of p.body.bundles || []) {
		const div = document.createElement("div");
		div.className = "bundle";
		const name = text(document.createElement("span"), b.name + ": " + fmt.format(b.tokens) + " tokens");
		const qty = document.createElement("input");
		qty.type = "number"; qty.min = "1"; qty.max = "100"; qty.value = "1";
		qty.setAttribute("aria-label", "How many of " + b.name);
		const buy = text(document.createElement("button"), "Buy");
		buy.type = "button";
		buy.dataset.bundle = b.name;
		buy.addEventListener("click", () => checkout(b.name, Number(qty.value)));
		div.append(name, qty, buy);
		bundles.appendChild(div);
	}
	if (p.body.topup_url && /^https?:\/\//.test(p.body.topup_url)) {
		$("topup-link").href = p.body.topup_url;
		$("topup").hidden = false;
	}
}

function describe(c) {
	const parts = [];
	if (c.request) parts.push(fmt.format(c.request) + " a request");
	if (c.request_bytes) parts.push(c.request_bytes + " of the request body");
	if (c.response_bytes) parts.push(c.response_bytes + " of the response body");
	if (c.usage_header) parts.push("per unit of " + c.usage_header);
	return parts.join(", ");
}

async function checkout(bundle, quantity) {
	text($("buy-error"), "");
	const r = await api("checkout", {
		method: "POST",
		headers: { "Content-Type": "application/json" },
		body: JSON.stringify({ bundle, quantity }),
	});
	if (r.status !== 200 || !r.body || !/^https:\/\//.test(r.body.url || "")) {
		text($("buy-error"), (r.body && r.body.detail) || "The checkout could not be made. Try again shortly.");
		return;
	}
	sessionStorage.setItem(CHECKOUT_AT, String(Date.now()));
	location.assign(r.body.url);
}

async function loadLedger(before) {
	const r = await api("ledger?limit=20" + (before ? "&before=" + encodeURIComponent(before) : ""));
	if (r.status !== 200) {
		showError("The ledger could not be read. Try again shortly.");
		return;
	}
	const tbody = $("ledger").tBodies[0];
	tbody.replaceChildren();
	for (const e of r.body.entries) {
		const row = tbody.insertRow();
		row.dataset.id = e.id;
		cell(row, e.time.replace("T", " ").replace("Z", ""));
		cell(row, e.kind);
		cell(row, fmt.format(e.amount), "num");
		cell(row, fmt.format(e.balance), "num");
		cell(row, Object.entries(e.detail).map(([k, v]) => k + ": " + v).join(", "), "detail");
	}
	ledgerNext = r.body.next || "";
	$("older").disabled = !ledgerNext;
}

// watchPurchase shows a purchase made from this tab as pending, back from
// Stripe, until its credit is in the ledger.
async function watchPurchase() {
	const params = new URLSearchParams(location.search);
	const since = Number(sessionStorage.getItem(CHECKOUT_AT) || "0");
	if (params.get("paid") !== "1" || !since) return;
	const banner = $("pending");
	banner.hidden = false;
	text(banner, "Your purchase is pending: the tokens appear here once the payment is confirmed.");
	for (let i = 0; i < 150; i++) {
		const r = await api("ledger?limit=10");
		const landed = r.status === 200 && r.body.entries.find((e) =>
			e.kind === "credit" && e.detail.reason === "purchase" && Date.parse(e.time) >= since - 60000);
		if (landed) {
			sessionStorage.removeItem(CHECKOUT_AT);
			text(banner, "Your purchase arrived: " + fmt.format(landed.amount) + " tokens.");
			const bal = await api("balance");
			if (bal.status === 200) showBalance(bal.body);
			loadLedger("");
			return;
		}
		await new Promise((done) => setTimeout(done, 2000));
	}
}

start();
