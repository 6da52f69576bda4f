// Headless-browser helpers for qplay notebooks in JupyterLab.
//
// Uses playwright-core (no bundled browser) with Debian's /usr/bin/chromium and
// the JupyterLab installed in /work/main/.venv. Everything binds to 127.0.0.1.
//
// CLI:
//   node tests/browser/lab.mjs screenshot NOTEBOOK OUT.png [--width 1400] [--height 1000]
//
// The notebook is copied into a fresh temporary folder first, so the original
// file is never modified. The server and the browser are always stopped, also
// on error or Ctrl-C.
//
// Library:
//   import { startLab, startVoila, launchBrowser, openNotebook, waitKernelIdle, runAll,
//            notebookSummary, screenshotNotebook, screenshot } from './lab.mjs';

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const JUPYTER = path.join(REPO, '.venv', 'bin', 'jupyter');
export const CHROMIUM = '/usr/bin/chromium';

export const TIMEOUTS = {
  serverStartMs: 60_000,
  kernelIdleMs: 300_000,
  runAllMs: 600_000,
  pageLoadMs: 60_000,
  serverStopMs: 15_000,
};

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(`[lab ${new Date().toISOString().slice(11, 19)}]`, ...a);

/** A TCP port that is free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function writeJson(file, obj) {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, JSON.stringify(obj, null, 2));
}

/**
 * Start a Jupyter server process (`command args`, with `--port` added) in `cwd`, in its own
 * process group. Resolves to { url, port, proc, stop(), logs() } once `readyPath` answers;
 * rejects after `timeoutMs` or if the process exits first. `cleanup` runs after it stopped.
 */
async function startServer(name, command, args, cwd, { readyPath, cleanup = async () => {}, timeoutMs, rootFlag = true }) {
  const port = await freePort();
  args = [...args, `--port=${port}`];
  if (rootFlag && process.getuid && process.getuid() === 0) args.push('--allow-root'); // containers/CI
  const out = [];
  const proc = spawn(command, args, {
    cwd,
    detached: true, // own process group, so stop() can take down helpers too
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BROWSER: 'true' },
  });
  const keep = (d) => { out.push(d.toString()); if (out.length > 2000) out.shift(); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; r(); }));

  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      // Graceful: /api/shutdown also shuts down kernels (they run in their own sessions).
      try {
        await fetch(`${url}/api/shutdown`, { method: 'POST', signal: AbortSignal.timeout(5000) });
      } catch { /* fall through to signals */ }
      const waitExit = (ms) => Promise.race([exitPromise, sleep(ms)]);
      await waitExit(TIMEOUTS.serverStopMs);
      for (const sig of ['SIGTERM', 'SIGKILL']) {
        if (exited) break;
        try { process.kill(-proc.pid, sig); } catch { /* gone */ }
        await waitExit(5000);
      }
    }
    await cleanup();
  };

  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (exited) throw new Error(`${name} exited early (${JSON.stringify(exited)})`);
      if (Date.now() > deadline) throw new Error(`${name} did not answer within ${timeoutMs / 1000} s`);
      try {
        const r = await fetch(`${url}${readyPath}`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) break;
      } catch { /* not yet */ }
      await sleep(250);
    }
  } catch (e) {
    await stop();
    e.message += `\n--- ${name} output ---\n${out.join('').slice(-4000)}`;
    throw e;
  }
  return { url, port, proc, stop, logs: () => out.join('') };
}

/**
 * Start `jupyter lab` on 127.0.0.1 (free port, no browser, no token, no
 * password) serving `notebookDir`. Settings and workspaces live in a fresh
 * temp dir, so runs do not depend on ~/.jupyter and do not restore old
 * layouts. Resolves as `startServer` does once /api/status answers.
 */
export async function startLab(notebookDir, { timeoutMs = TIMEOUTS.serverStartMs } = {}) {
  const state = await fsp.mkdtemp(path.join(os.tmpdir(), 'qplay-lab-state-'));
  const settings = path.join(state, 'user-settings');
  const workspaces = path.join(state, 'workspaces');
  await fsp.mkdir(workspaces, { recursive: true });
  // Deterministic UI: render every cell (so a tall screenshot shows them all),
  // no news toast, no update check.
  await writeJson(path.join(settings, '@jupyterlab/notebook-extension/tracker.jupyterlab-settings'),
    { windowingMode: 'none' });
  await writeJson(path.join(settings, '@jupyterlab/apputils-extension/notification.jupyterlab-settings'),
    { fetchNews: 'false', checkForUpdates: false });
  const args = [
    'lab',
    '--no-browser',
    '--ip=127.0.0.1',
    '--port-retries=0',
    `--notebook-dir=${notebookDir}`,
    "--IdentityProvider.token=",
    "--ServerApp.password=",
    '--ServerApp.disable_check_xsrf=True',
    '--ServerApp.open_browser=False',
    '--LabApp.expose_app_in_browser=True',
    '--LabApp.news_url=None',
    '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
    `--LabApp.user_settings_dir=${settings}`,
    `--LabApp.workspaces_dir=${workspaces}`,
  ];
  return startServer('jupyter lab', JUPYTER, args, notebookDir, {
    readyPath: '/api/status',
    cleanup: () => fsp.rm(state, { recursive: true, force: true }),
    timeoutMs,
  });
}

/**
 * Start Voilà (the project's venv) on 127.0.0.1 serving `notebook` as an app, with the
 * options `make app` uses (`VOILA_ARGS` in the Makefile come in as `extra`). Resolves as
 * `startServer` does; the app is at its `url`.
 */
export async function startVoila(notebook, extra = [], { timeoutMs = TIMEOUTS.serverStartMs } = {}) {
  const args = [path.basename(notebook), '--no-browser', '--Voila.ip=127.0.0.1', '--token=', ...extra];
  return startServer('voila', path.join(REPO, '.venv', 'bin', 'voila'), args, path.dirname(notebook), {
    readyPath: '/voila/static/voila.js',
    timeoutMs,
    rootFlag: false, // Voilà runs as root without being told
  });
}

/**
 * Launch headless Debian Chromium with a fresh temp --user-data-dir.
 * Resolves to { context, page, close() }.
 */
export async function launchBrowser({ width = 1400, height = 1000 } = {}) {
  const userDataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qplay-chromium-'));
  let context;
  try {
    // launchPersistentContext is how playwright takes a --user-data-dir.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width, height },
      timeout: 60_000,
    });
  } catch (e) {
    await fsp.rm(userDataDir, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try { await context.close(); } catch { /* already gone */ }
    await fsp.rm(userDataDir, { recursive: true, force: true });
  };
  return { context, page, close, consoleErrors };
}

/** Text of any open JupyterLab dialog, or null. */
export async function dialogText(page) {
  return page.evaluate(() => {
    const d = document.querySelector('.jp-Dialog');
    return d ? d.innerText.trim() : null;
  });
}

/** Navigate to /lab/tree/<name> and wait for the notebook panel. */
export async function openNotebook(page, labUrl, name, { timeoutMs = TIMEOUTS.pageLoadMs } = {}) {
  const rel = name.split('/').map(encodeURIComponent).join('/');
  await page.goto(`${labUrl}/lab/tree/${rel}`, { timeout: timeoutMs, waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    return !!(w && w.content && w.sessionContext && w.node.classList.contains('jp-NotebookPanel'));
  }, null, { timeout: timeoutMs, polling: 250 });
  await page.evaluate(() => window.jupyterapp.shell.currentWidget.context.ready);
}

/** Wait until the current notebook's kernel is connected and idle. */
export async function waitKernelIdle(page, { timeoutMs = TIMEOUTS.kernelIdleMs, stableMs = 1000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let since = null;
  for (;;) {
    const st = await page.evaluate(() => {
      const w = window.jupyterapp.shell.currentWidget;
      const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
      return {
        status: k ? k.status : 'no-kernel',
        conn: k ? k.connectionStatus : 'none',
        dialog: document.querySelector('.jp-Dialog') ? document.querySelector('.jp-Dialog').innerText.trim() : null,
      };
    });
    if (st.dialog) throw new Error(`dialog while waiting for kernel: ${st.dialog}`);
    if (st.status === 'idle' && st.conn === 'connected') {
      since ??= Date.now();
      if (Date.now() - since >= stableMs) return;
    } else {
      since = null;
    }
    if (Date.now() > deadline) {
      throw new Error(`kernel not idle within ${timeoutMs / 1000} s (status=${st.status}, connection=${st.conn})`);
    }
    await sleep(250);
  }
}

/**
 * Run all cells and wait until none is queued/running ([*]), every code cell
 * with source has an execution count, and the kernel is idle.
 */
export async function runAll(page, { timeoutMs = TIMEOUTS.runAllMs } = {}) {
  const deadline = Date.now() + timeoutMs;
  // Don't await the command: its promise only settles when execution ends.
  const cmd = page.evaluate(() => window.jupyterapp.commands.execute('notebook:run-all-cells'))
    .then((v) => ({ ok: true, v }), (e) => ({ ok: false, e: String(e) }));
  let since = null;
  for (;;) {
    const st = await page.evaluate(() => {
      const w = window.jupyterapp.shell.currentWidget;
      const k = w.sessionContext.session && w.sessionContext.session.kernel;
      const prompts = [...w.node.querySelectorAll('.jp-InputArea-prompt')].map((p) => p.textContent);
      const codeCells = w.content.widgets.filter((c) => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
      return {
        kernel: k ? k.status : 'no-kernel',
        running: prompts.filter((t) => t.includes('*')).length,
        unexecuted: codeCells.filter((c) => c.model.executionCount == null).length,
        dialog: document.querySelector('.jp-Dialog') ? document.querySelector('.jp-Dialog').innerText.trim() : null,
      };
    });
    if (st.dialog) throw new Error(`dialog during run-all: ${st.dialog}`);
    if (st.kernel === 'idle' && st.running === 0 && st.unexecuted === 0) {
      since ??= Date.now();
      if (Date.now() - since >= 1500) break;
    } else {
      since = null;
    }
    if (Date.now() > deadline) {
      throw new Error(`run-all not finished within ${timeoutMs / 1000} s (${JSON.stringify(st)})`);
    }
    await sleep(500);
  }
  const r = await Promise.race([cmd, sleep(5000).then(() => ({ ok: true, v: 'pending' }))]);
  if (!r.ok) throw new Error(`notebook:run-all-cells failed: ${r.e}`);
  return r.v;
}

/** What the user sees, as data: kernel name, dialogs, per-cell outputs. */
export async function notebookSummary(page) {
  return page.evaluate(() => {
    const w = window.jupyterapp.shell.currentWidget;
    const k = w.sessionContext.session && w.sessionContext.session.kernel;
    const kernelLabel = w.node.querySelector('.jp-Toolbar-kernelName');
    return {
      kernelDisplayName: w.sessionContext.kernelDisplayName,
      kernelLabel: kernelLabel ? kernelLabel.innerText.trim() : null,
      kernelStatus: k ? k.status : null,
      dialog: document.querySelector('.jp-Dialog') ? document.querySelector('.jp-Dialog').innerText.trim() : null,
      cells: w.content.widgets.filter((c) => c.model.type === 'code').map((c) => ({
        prompt: (c.node.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
        // What the kernel sent (output type + mime keys), from the model.
        sent: Array.from({ length: c.model.outputs.length }, (_, i) => {
          const o = c.model.outputs.get(i).toJSON();
          return o.output_type + (o.data ? ` [${Object.keys(o.data).join(', ')}]` : o.name ? ` (${o.name})` : o.ename ? ` ${o.ename}: ${o.evalue}` : '');
        }),
        outputs: [...c.node.querySelectorAll('.jp-OutputArea-output')].map((o) => ({
          mime: o.getAttribute('data-mime-type'),
          tables: o.querySelectorAll('table').length,
          text: o.innerText.trim().slice(0, 300),
        })),
      })),
    };
  });
}

/**
 * Screenshot the whole notebook: grow the viewport so the notebook's scroll
 * area fits without scrolling (JupyterLab's body never scrolls, so a plain
 * fullPage screenshot would cut it off), then take a full-page PNG.
 */
export async function screenshotNotebook(page, outPng, { width = 1400, height = 1000 } = {}) {
  await page.evaluate(() => window.jupyterapp.shell.currentWidget.content.scrollToItem?.(0));
  for (let i = 0; i < 3; i++) {
    // Measure to the last cell's bottom, not scrollHeight: the notebook's
    // "scroll past end" padding grows with the viewport.
    const extra = await page.evaluate(() => {
      const w = window.jupyterapp.shell.currentWidget;
      const s = w.content.node;
      const scroller = s.querySelector('.jp-WindowedPanel-outer') || s;
      scroller.scrollTop = 0;
      const cells = s.querySelectorAll('.jp-Cell');
      if (!cells.length) return 0;
      const bottom = cells[cells.length - 1].getBoundingClientRect().bottom + 40;
      return Math.ceil(bottom - scroller.getBoundingClientRect().bottom);
    });
    if (extra <= 1) break;
    const vp = page.viewportSize();
    await page.setViewportSize({ width, height: Math.min(vp.height + extra, 30000) });
    await sleep(500);
  }
  await fsp.mkdir(path.dirname(path.resolve(outPng)), { recursive: true });
  await page.screenshot({ path: outPng, fullPage: true });
}

/**
 * Full pipeline: copy the notebook into a temp dir, start lab, open it, wait
 * for the kernel, run all, screenshot. Always stops browser and server.
 */
export async function screenshot(notebook, outPng, { width = 1400, height = 1000 } = {}) {
  const t0 = Date.now();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qplay-nb-'));
  const name = path.basename(notebook);
  await fsp.copyFile(notebook, path.join(dir, name));
  let lab = null;
  let browser = null;
  const cleanup = async () => {
    if (browser) await browser.close();
    if (lab) await lab.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  };
  const onSignal = async (sig) => {
    log(`got ${sig}, cleaning up`);
    await cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    log(`starting jupyter lab in ${dir}`);
    lab = await startLab(dir);
    log(`lab at ${lab.url}; launching chromium`);
    browser = await launchBrowser({ width, height });
    const { page } = browser;
    await openNotebook(page, lab.url, name);
    log('notebook open; waiting for kernel idle');
    await waitKernelIdle(page);
    log(`kernel idle after ${((Date.now() - t0) / 1000).toFixed(1)} s; running all cells`);
    await runAll(page);
    log(`run-all done after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await sleep(1000); // let late renders settle
    const summary = await notebookSummary(page);
    await screenshotNotebook(page, outPng, { width, height });
    summary.consoleErrors = browser.consoleErrors;
    summary.seconds = +((Date.now() - t0) / 1000).toFixed(1);
    summary.screenshot = path.resolve(outPng);
    return summary;
  } catch (e) {
    // Best effort: leave a picture of the failure next to the requested output.
    if (browser) {
      const failPng = outPng.replace(/\.png$/i, '') + '.failed.png';
      try { await browser.page.screenshot({ path: failPng, fullPage: true }); log(`failure screenshot: ${failPng}`); } catch { /* ignore */ }
    }
    if (lab) log(`--- jupyter lab output (tail) ---\n${lab.logs().slice(-3000)}`);
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

function parseCli(argv) {
  const [cmd, notebook, out, ...rest] = argv;
  const opts = { width: 1400, height: 1000 };
  for (let i = 0; i < rest.length; i++) {
    const m = rest[i].match(/^--(width|height)(?:=(\d+))?$/);
    if (!m) throw new Error(`unknown option ${rest[i]}`);
    const v = m[2] ?? rest[++i];
    if (!/^\d+$/.test(v ?? '')) throw new Error(`--${m[1]} needs a number`);
    opts[m[1]] = Number(v);
  }
  if (cmd !== 'screenshot' || !notebook || !out) {
    throw new Error('usage: node tests/browser/lab.mjs screenshot NOTEBOOK OUT.png [--width 1400] [--height 1000]');
  }
  if (!fs.existsSync(notebook)) throw new Error(`no such notebook: ${notebook}`);
  return { notebook, out, opts };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let args;
  try {
    args = parseCli(process.argv.slice(2));
  } catch (e) {
    console.error(e.message);
    process.exit(2);
  }
  screenshot(args.notebook, args.out, args.opts).then(
    (summary) => { console.log(JSON.stringify(summary, null, 2)); process.exit(0); },
    (e) => { console.error(`FAILED: ${e.stack || e}`); process.exit(1); },
  );
}

/**
 * A browser test of one notebook: copies it into a fresh folder, starts JupyterLab and
 * Chromium, opens it, waits for the kernel, runs all cells, then calls
 * `body({ page, check, log })`. `check(name, ok, detail)` records a check and throws if it
 * failed. On failure a screenshot `<name>-failed.png` goes to `outDir`. Always stops browser
 * and server. Resolves to { checks, consoleErrors }.
 */
export async function checkNotebook(notebook, outDir, body) {
  const name = path.basename(notebook, '.ipynb');
  const say = (...a) => console.error(`[${name} ${new Date().toISOString().slice(11, 19)}]`, ...a);
  await fsp.mkdir(outDir, { recursive: true });
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `qplay-${name}-`));
  await fsp.copyFile(notebook, path.join(dir, `${name}.ipynb`));
  const lab = await startLab(dir);
  let browser = null;
  const summary = { checks: [] };
  const check = (what, ok, detail) => {
    summary.checks.push({ name: what, ok: !!ok, detail: String(detail).slice(0, 300) });
    if (!ok) throw new Error(`check failed: ${what}: ${detail}`);
  };
  try {
    browser = await launchBrowser({ width: 1300, height: 1000 });
    const { page } = browser;
    await openNotebook(page, lab.url, `${name}.ipynb`);
    await waitKernelIdle(page);
    say('kernel idle; running all cells');
    await runAll(page);
    say('ran all cells');
    await body({ page, check, log: say, reopen: () => openNotebook(page, lab.url, `${name}.ipynb`) });
    summary.consoleErrors = browser.consoleErrors.filter((e) => !e.includes('favicon'));
    return summary;
  } catch (e) {
    if (browser) {
      try { await browser.page.screenshot({ path: path.join(outDir, `${name}-failed.png`), fullPage: true }); } catch { /* ignore */ }
    }
    e.message += `\n--- jupyter lab (tail) ---\n${lab.logs().slice(-3000)}`;
    throw e;
  } finally {
    if (browser) await browser.close();
    await lab.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Runs a `checkNotebook` test as a command: prints its summary as JSON, exits 1 on failure. */
export function cli(run) {
  run(process.argv[2] || path.join(REPO, 'target', 'browser')).then(
    (s) => { console.log(JSON.stringify(s, null, 2)); process.exit(0); },
    (e) => { console.error(`FAILED: ${e.stack || e}`); process.exit(1); },
  );
}
