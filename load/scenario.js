// clickpulse sessions for k6: every session plays one user type, from one region (its client
// address travels as X-Forwarded-For), as one demo user with its own session id and user agent;
// it signs in (POST /auth/token: its first request), browses, fills a cart, sometimes checks
// out, and thinks between requests.
// An arrival-rate executor (open model) holds the target request rate, whatever the latency.
// Each iteration is exactly one request and never sleeps: a VU interleaves a pool of sessions
// and serves the most overdue one, so a thinking user holds no VU and the VUs needed are
// rate x latency, not rate x (think time + latency).
// The plan (load/config.yaml, rendered by the Python runner) comes in CLICKPULSE_LOAD_PLAN.
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const plan = JSON.parse(open(__ENV.CLICKPULSE_LOAD_PLAN));

// Answered requests, tagged phase and outcome (good | shed | error): the audit expects each of
// them in ClickHouse, and `good` ones make the goodput.
const sent = new Counter('clickpulse_sent');
// Requests k6 gave up on (timeout, connection error): the server may still have answered them,
// so the audit must not take their spans for duplicates.
const abandoned = new Counter('clickpulse_abandoned');
// Answers that were 429 (a rate limit of the services), tagged phase: shed, and named apart.
const limited = new Counter('clickpulse_rate_limited');
// Latency of answered requests, tagged phase, answer (served | shed) and, in the steady phase,
// window (early | late half) to see latency climb.
const answers = new Trend('clickpulse_latency', true);
const latency = plan.endpoints.map((_, i) => new Trend(`clickpulse_endpoint_${i}`, true));

const AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148',
  'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0 Mobile Safari/537.36',
];

function scenario() {
  const base = {
    executor: plan.ramp_up_s > 0 ? 'ramping-arrival-rate' : 'constant-arrival-rate',
    timeUnit: '1s',
    preAllocatedVUs: plan.pre_allocated_vus,
    maxVUs: plan.max_vus,
    // Long enough for a request in flight at the end to be answered or time out, so that each
    // one is counted as sent or abandoned (a cut-off iteration would be neither).
    gracefulStop: `${Math.ceil(plan.request_timeout_ms / 1000) + 5}s`,
  };
  if (plan.ramp_up_s > 0) {
    return Object.assign(base, {
      startRate: 1,
      stages: [
        { target: plan.rps, duration: `${plan.ramp_up_s}s` },
        { target: plan.rps, duration: `${plan.duration_s}s` },
      ],
    });
  }
  return Object.assign(base, { rate: plan.rps, duration: `${plan.duration_s}s` });
}

const thresholds = Object.assign({}, plan.thresholds);
// Sub-metrics appear in the summary only when a threshold names them; these always hold.
[
  'clickpulse_sent{phase:steady}',
  'clickpulse_sent{phase:steady,outcome:good}',
  'clickpulse_sent{phase:steady,outcome:error}',
  'clickpulse_abandoned{phase:steady}',
  'clickpulse_abandoned{cause:timeout}',
  'clickpulse_abandoned{phase:steady,cause:timeout}',
  'clickpulse_rate_limited{phase:steady}',
].forEach((name) => { thresholds[name] = ['count>=0']; });
[
  'clickpulse_latency{phase:steady}',
  'clickpulse_latency{phase:steady,answer:served}',
  'clickpulse_latency{phase:steady,answer:shed}',
  'clickpulse_latency{window:early}',
  'clickpulse_latency{window:late}',
].forEach((name) => { thresholds[name] = ['max>=0']; });
plan.endpoints.forEach((_, i) => { thresholds[`clickpulse_endpoint_${i}`] = ['max>=0']; });

export const options = {
  scenarios: { sessions: scenario() },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max', 'count'],
  discardResponseBodies: true,
};
// An out-of-stock checkout (409) is a normal business outcome, not a failed request.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 399 }, 409));

function pickWeighted(items) {
  const total = items.reduce((sum, item) => sum + item.weight, 0);
  let r = Math.random() * total;
  for (const item of items) {
    r -= item.weight;
    if (r <= 0) return item;
  }
  return items[items.length - 1];
}

const randInt = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
const randFloat = (lo, hi) => lo + Math.random() * (hi - lo);
const pick = (list) => list[Math.floor(Math.random() * list.length)];

// Zipf-like popularity: product k (by rank) is chosen with weight 1 / k^skew.
const productCdf = (() => {
  const weights = plan.product_ids.map((_, k) => 1 / Math.pow(k + 1, plan.skew));
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  return weights.map((w) => (acc += w / total));
})();

function popularProduct() {
  const r = Math.random();
  let lo = 0;
  let hi = productCdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (productCdf[mid] < r) lo = mid + 1; else hi = mid;
  }
  return plan.product_ids[lo];
}

function uuid() {
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

function addressIn(region) {
  const n = region.first + Math.floor(Math.random() * region.size);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function newSession() {
  const type = pickWeighted(plan.user_types);
  return {
    type,
    endpoints: plan.endpoints.map((e, i) => Object.assign({ index: i }, e))
      .filter((e) => e.user_types.includes(type.name) && e.weight > 0),
    user: pick(plan.users),
    token: null,
    id: uuid(),
    ip: addressIn(pickWeighted(plan.regions)),
    agent: pick(AGENTS),
    left: randInt(type.requests_min, type.requests_max),
    cart: 0,
    due: 0,
  };
}

const find = (method, path) => plan.endpoints.findIndex((e) => e.method === method && e.path === path);
const CART_ADD = find('POST', '/cart');
const CHECKOUT = find('POST', '/checkout');
const SIGN_IN = find('POST', '/auth/token');

// This VU's sessions in progress; each is due for its next request at `due` (ms since epoch).
const pool = [];
// Mean ms between a session falling due and this VU serving it. k6 hands iterations to its VUs
// in turn, so a due session waits for its VU's next turn, longer when several are due at once;
// sessions are made due that much early, so the gaps between their requests average their
// think time instead of think time plus that wait.
let lateMs = 0;

function dueSession(now) {
  let best = null;
  for (const session of pool) {
    if (session.due <= now && (best === null || session.due < best.due)) best = session;
  }
  if (best !== null) {
    lateMs += (now - best.due - lateMs) * 0.05;
    return best;
  }
  const session = newSession();
  pool.push(session);
  return session;
}

function phase(elapsedS) {
  return elapsedS >= plan.ramp_up_s ? 'steady' : 'ramp';
}

// Retry-After in seconds (the services send a number), or 0.
function retryAfterS(response) {
  const value = Number(response.headers['Retry-After']);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

// Returns how long the server asked this session to wait (Retry-After), in seconds.
function call(session, endpoint) {
  const headers = {
    'X-Session-Id': session.id,
    'X-Forwarded-For': session.ip,
    'User-Agent': session.agent,
    'X-Clickpulse-Run-Id': plan.run_id,
    'Content-Type': 'application/json',
  };
  let url = endpoint.base_url + endpoint.path;
  let body = null;
  const signIn = endpoint.index === SIGN_IN;
  if (signIn) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = { username: session.user.email, password: plan.demo_password };
  } else {
    headers.Authorization = `Bearer ${session.token}`;
  }
  if (endpoint.path === '/products') url += `?limit=20&offset=${randInt(0, 3) * 20}`;
  url = url.replace('{user_id}', String(session.user.id))
    .replace('{product_id}', String(popularProduct()))
    .replace('{order_id}', '1');
  let quantity = 0;
  if (endpoint.method === 'POST' && endpoint.path === '/cart') {
    quantity = randInt(1, 3);
    body = JSON.stringify({ product_id: popularProduct(), quantity });
  }
  const elapsedS = (Date.now() - exec.scenario.startTime) / 1000;
  const tags = { name: `${endpoint.method} ${endpoint.path}`, phase: phase(elapsedS) };
  const response = http.request(endpoint.method, url, body, {
    headers,
    tags,
    timeout: `${plan.request_timeout_ms}ms`,
    // Bodies are discarded (options), except the token's.
    responseType: signIn ? 'text' : 'none',
  });
  const status = response.status;
  if (status === 0) {
    // k6's error code 1050 is its request timeout; the others are connection failures.
    const cause = response.error_code === 1050 ? 'timeout' : 'connection';
    abandoned.add(1, { phase: tags.phase, cause });
    return 0;
  }
  const shed = status === 503 || status === 429;
  const outcome = shed ? 'shed' : status >= 500 ? 'error' : 'good';
  sent.add(1, { phase: tags.phase, outcome });
  if (status === 429) limited.add(1, { phase: tags.phase });
  const answerTags = { phase: tags.phase, answer: shed ? 'shed' : 'served' };
  if (tags.phase === 'steady') {
    answerTags.window = elapsedS < plan.ramp_up_s + plan.duration_s / 2 ? 'early' : 'late';
  }
  answers.add(response.timings.duration, answerTags);
  latency[endpoint.index].add(response.timings.duration);
  if (signIn && status === 200) session.token = JSON.parse(response.body).access_token;
  if (quantity > 0 && status < 300) session.cart += quantity;
  if (endpoint.path === '/checkout' && status === 201) session.cart = 0;
  return shed ? retryAfterS(response) : 0;
}

export default function () {
  const session = dueSession(Date.now());
  if (session.token === null) {
    // Not signed in yet (or the sign-in was shed): that is this turn's request.
    const wait = call(session, Object.assign({ index: SIGN_IN }, plan.endpoints[SIGN_IN]));
    session.due = Date.now() + Math.max(randFloat(0.2, 1) * 1000 - lateMs, wait * 1000);
    if (session.token === null && wait === 0) pool.splice(pool.indexOf(session), 1);
    return;
  }
  let endpoint = pickWeighted(session.endpoints);
  const last = session.left === 1;
  if (endpoint.index === CHECKOUT && session.cart === 0 && CART_ADD >= 0) {
    endpoint = Object.assign({ index: CART_ADD }, plan.endpoints[CART_ADD]);
  } else if (last && session.cart > 0 && CHECKOUT >= 0 && Math.random() < plan.conversion) {
    endpoint = Object.assign({ index: CHECKOUT }, plan.endpoints[CHECKOUT]);
  }
  const wait = call(session, endpoint);
  session.left -= 1;
  if (session.left <= 0) {
    pool.splice(pool.indexOf(session), 1);
    return;
  }
  // A shed session honours Retry-After; the rate does not drop, other sessions fill in.
  const thinkMs = randFloat(session.type.think_min, session.type.think_max) * 1000;
  session.due = Date.now() + Math.max(thinkMs - lateMs, wait * 1000);
}

export function handleSummary(data) {
  return { [__ENV.CLICKPULSE_SUMMARY]: JSON.stringify(data) };
}
