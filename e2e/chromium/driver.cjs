// Drives Debian's Chromium through Playwright for the Rust tests (e2e/src/chromium.rs).
//
// One JSON command per line on stdin, one JSON answer per line on stdout:
// {"ok": value} or {"error": "message"}. Commands:
//   {"op": "tab"}                          opens a tab, answers its number
//   {"op": "goto", "tab", "url"}           navigates and waits for the load event
//   {"op": "eval", "tab", "js"}            evaluates an expression in the tab (awaits promises)
//   {"op": "waitForUrl", "tab", "url"}     waits until the tab shows that URL (a click landed)
//   {"op": "back", "tab"}                  history back, waits for the page
//   {"op": "responses", "tab"}             what the tab's frames received so far:
//                                          [{url, status, servedBy, method}], then forgets them
//   {"op": "cookies"}                      the browser's cookies
//   {"op": "addCookie", "scope", "name", "value"}  adds a cookie: host-only for a URL's host,
//                                          or for a domain (`.shop.test`) and its hosts
//   {"op": "click", "tab", "selector"}     clicks the element as a person would (visible, enabled)
//   {"op": "fill", "tab", "selector", "value"}  types into an input
//   {"op": "press", "tab", "selector", "key"}   focuses the element and presses a key
//   {"op": "waitFor", "tab", "js", "timeoutMs"} waits until the expression is truthy, answers it
//   {"op": "screenshot", "tab", "path"}    saves a full-page PNG
// The browser closes when stdin does.
//
// Arguments: the directory of the playwright-core package, the Chromium executable, then any
// Chromium flags (such as --host-resolver-rules).
'use strict';
const { createInterface } = require('node:readline');

async function main() {
  const [playwright, executablePath, ...args] = process.argv.slice(2);
  const { chromium } = require(playwright);
  // Playwright turns the back/forward cache off by default; browsers have it on.
  const browser = await chromium.launch({
    executablePath,
    args,
    headless: true,
    ignoreDefaultArgs: ['--disable-back-forward-cache'],
  });
  const context = await browser.newContext();
  const tabs = [];
  const seen = new Map();

  function record(page) {
    const list = [];
    seen.set(page, list);
    page.on('response', (response) => {
      list.push({
        url: response.url(),
        status: response.status(),
        servedBy: response.headers()['x-served-by'] ?? null,
        method: response.request().method(),
      });
    });
  }

  const ops = {
    async tab() {
      const page = await context.newPage();
      record(page);
      tabs.push(page);
      return tabs.length - 1;
    },
    async goto({ tab, url }) {
      const response = await tabs[tab].goto(url, { waitUntil: 'load' });
      return response ? response.status() : null;
    },
    async eval({ tab, js }) {
      return await tabs[tab].evaluate(js);
    },
    async waitForUrl({ tab, url }) {
      await tabs[tab].waitForURL(url, { waitUntil: 'load' });
      return tabs[tab].url();
    },
    async back({ tab }) {
      // A page restored from the back/forward cache fires no load event: wait for the commit.
      const response = await tabs[tab].goBack({ waitUntil: 'commit' });
      return response ? response.status() : null;
    },
    async responses({ tab }) {
      const list = seen.get(tabs[tab]);
      return list.splice(0, list.length);
    },
    async cookies() {
      return await context.cookies();
    },
    async click({ tab, selector }) {
      await tabs[tab].click(selector);
    },
    async fill({ tab, selector, value }) {
      await tabs[tab].fill(selector, value);
    },
    async press({ tab, selector, key }) {
      await tabs[tab].press(selector, key);
    },
    // Polled from here with evaluate (the DevTools protocol), not with waitForFunction, whose
    // in-page polling evaluates a string with eval: pages with a Content-Security-Policy
    // without 'unsafe-eval' (the dashboard's) refuse that.
    async waitFor({ tab, js, timeoutMs }) {
      const deadline = Date.now() + timeoutMs;
      let last = null;
      for (;;) {
        try {
          const value = await tabs[tab].evaluate(js);
          if (value) return value;
          last = null;
        } catch (err) {
          // A navigation in between destroys the context: try again in the next page.
          last = err;
        }
        if (Date.now() >= deadline) {
          throw new Error(`not true within ${timeoutMs} ms: ${js}${last ? ` (${last.message})` : ''}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async screenshot({ tab, path }) {
      await tabs[tab].screenshot({ path, fullPage: true });
    },
    async addCookie({ scope, name, value }) {
      const where = scope.startsWith('http') ? { url: scope } : { domain: scope, path: '/' };
      await context.addCookies([{ name, value, ...where }]);
    },
  };

  const lines = createInterface({ input: process.stdin });
  process.stdout.write(JSON.stringify({ ok: 'ready' }) + '\n');
  for await (const line of lines) {
    let answer;
    try {
      const command = JSON.parse(line);
      answer = { ok: (await ops[command.op](command)) ?? null };
    } catch (err) {
      answer = { error: String(err && err.stack ? err.stack : err) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
  }
  await browser.close();
}

main().catch((err) => {
  process.stderr.write(`driver: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
