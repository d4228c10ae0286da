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

// k6 runs this script in an interpreter, on the same 2 cores as the services: at 1,000 req/s
// its JavaScript was a third of k6's CPU (pprof). So everything that does not change between
// requests is worked out once here: each user type's endpoints and their cumulative weights,
// every endpoint's URL parts and tags, the metric tag sets.

// Cumulative weights of `items`, for `pickWeighted`.
function weighted(items) {
  let acc = 0;
  return { items, cdf: items.map((item) => (acc += item.weight)), total: acc };
}

function pickWeighted(choice) {
  const r = Math.random() * choice.total;
  const { cdf, items } = choice;
  for (let i = 0; i < cdf.length; i++) {
    if (r < cdf[i]) return items[i];
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

const hex = (digits) => Math.floor(Math.random() * 16 ** digits).toString(16).padStart(digits, '0');

// A random (version 4) UUID.
function uuid() {
  const variant = (8 + Math.floor(Math.random() * 4)).toString(16);
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${variant}${hex(3)}-${hex(6)}${hex(6)}`;
}

function addressIn(region) {
  const n = region.first + Math.floor(Math.random() * region.size);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const PHASES = ['ramp', 'steady'];
const ENDPOINTS = plan.endpoints.map((e, index) => {
  const name = `${e.method} ${e.path}`;
  const url = e.base_url + e.path.replace('{order_id}', '1');
  const [head, tail] = url.includes('{product_id}') ? url.split('{product_id}') : [url, null];
  return Object.assign({}, e, {
    index,
    tags: { ramp: { name, phase: 'ramp' }, steady: { name, phase: 'steady' } },
    // The URL: fixed, or made per request from these parts.
    url,
    urlHead: head,
    urlTail: tail,
    pages: e.path === '/products'
      ? [0, 1, 2, 3].map((page) => `${e.base_url}${e.path}?limit=20&offset=${page * 20}`)
      : null,
    perUser: e.path.includes('{user_id}'),
    addsToCart: e.method === 'POST' && e.path === '/cart',
    checksOut: e.path === '/checkout',
  });
});
const find = (method, path) => ENDPOINTS.findIndex((e) => e.method === method && e.path === path);
const CART_ADD = find('POST', '/cart');
const CHECKOUT = find('POST', '/checkout');
const SIGN_IN = find('POST', '/auth/token');
const USER_TYPES = weighted(plan.user_types.map((type) => Object.assign({}, type, {
  endpoints: weighted(ENDPOINTS.filter(
    (e) => e.user_types.includes(type.name) && e.weight > 0,
  )),
})));
const REGIONS = weighted(plan.regions);
const SENT_TAGS = {};
const SHED_TAGS = {};
const ANSWER_TAGS = {};
const ABANDONED_TAGS = {};
PHASES.forEach((phase) => {
  SENT_TAGS[phase] = {
    good: { phase, outcome: 'good' },
    shed: { phase, outcome: 'shed' },
    error: { phase, outcome: 'error' },
  };
  SHED_TAGS[phase] = { phase };
  ABANDONED_TAGS[phase] = {
    timeout: { phase, cause: 'timeout' },
    connection: { phase, cause: 'connection' },
  };
  ANSWER_TAGS[phase] = {};
  ['served', 'shed'].forEach((answer) => {
    ANSWER_TAGS[phase][answer] = phase === 'steady'
      ? { early: { phase, answer, window: 'early' }, late: { phase, answer, window: 'late' } }
      : { early: { phase, answer }, late: { phase, answer } };
  });
});
const TIMEOUT = `${plan.request_timeout_ms}ms`;
const SIGN_IN_PARAMS = { tags: null, headers: null, timeout: TIMEOUT, responseType: 'text' };
// Bodies are discarded (options), except the token's.
const PARAMS = { tags: null, headers: null, timeout: TIMEOUT, responseType: 'none' };

function newSession() {
  const type = pickWeighted(USER_TYPES);
  const id = uuid();
  const ip = addressIn(pickWeighted(REGIONS));
  const agent = pick(AGENTS);
  const user = pick(plan.users);
  const headers = {
    'X-Session-Id': id,
    'X-Forwarded-For': ip,
    'User-Agent': agent,
    'X-Clickpulse-Run-Id': plan.run_id,
    'Content-Type': 'application/json',
  };
  return {
    type,
    user,
    token: null,
    // Sign-in's headers, then (once signed in) every other request's, token included.
    signInHeaders: Object.assign({}, headers, { 'Content-Type': 'application/x-www-form-urlencoded' }),
    headers,
    left: randInt(type.requests_min, type.requests_max),
    cart: 0,
    due: 0,
  };
}

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

// The scenario's start, read once: `exec.scenario` builds a new object at each read.
let startTime = 0;

// Retry-After in seconds (the services send a number), or 0.
function retryAfterS(response) {
  const value = Number(response.headers['Retry-After']);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

function urlOf(session, endpoint) {
  if (endpoint.pages !== null) return endpoint.pages[randInt(0, 3)];
  const url = endpoint.urlTail === null
    ? endpoint.url
    : endpoint.urlHead + popularProduct() + endpoint.urlTail;
  return endpoint.perUser ? url.replace('{user_id}', String(session.user.id)) : url;
}

// Returns how long the server asked this session to wait (Retry-After), in seconds.
function call(session, endpoint) {
  const signIn = endpoint.index === SIGN_IN;
  const params = signIn ? SIGN_IN_PARAMS : PARAMS;
  let body = null;
  let quantity = 0;
  if (signIn) {
    params.headers = session.signInHeaders;
    body = { username: session.user.email, password: plan.demo_password };
  } else {
    params.headers = session.headers;
    if (endpoint.addsToCart) {
      quantity = randInt(1, 3);
      body = JSON.stringify({ product_id: popularProduct(), quantity });
    }
  }
  if (startTime === 0) startTime = exec.scenario.startTime;
  const elapsedS = (Date.now() - startTime) / 1000;
  const phase = elapsedS >= plan.ramp_up_s ? 'steady' : 'ramp';
  params.tags = endpoint.tags[phase];
  const response = http.request(endpoint.method, urlOf(session, endpoint), body, params);
  const status = response.status;
  if (status === 0) {
    // k6's error code 1050 is its request timeout; the others are connection failures.
    abandoned.add(1, ABANDONED_TAGS[phase][response.error_code === 1050 ? 'timeout' : 'connection']);
    return 0;
  }
  const shed = status === 503 || status === 429;
  sent.add(1, SENT_TAGS[phase][shed ? 'shed' : status >= 500 ? 'error' : 'good']);
  if (status === 429) limited.add(1, SHED_TAGS[phase]);
  const window = elapsedS < plan.ramp_up_s + plan.duration_s / 2 ? 'early' : 'late';
  answers.add(response.timings.duration, ANSWER_TAGS[phase][shed ? 'shed' : 'served'][window]);
  latency[endpoint.index].add(response.timings.duration);
  if (signIn && status === 200) {
    session.token = JSON.parse(response.body).access_token;
    session.headers.Authorization = `Bearer ${session.token}`;
  }
  if (quantity > 0 && status < 300) session.cart += quantity;
  if (endpoint.checksOut && status === 201) session.cart = 0;
  return shed ? retryAfterS(response) : 0;
}

export default function () {
  const session = dueSession(Date.now());
  if (session.token === null) {
    // Not signed in yet (or the sign-in was shed): that is this turn's request.
    const wait = call(session, ENDPOINTS[SIGN_IN]);
    session.due = Date.now() + Math.max(randFloat(0.2, 1) * 1000 - lateMs, wait * 1000);
    if (session.token === null && wait === 0) pool.splice(pool.indexOf(session), 1);
    return;
  }
  let endpoint = pickWeighted(session.type.endpoints);
  const last = session.left === 1;
  if (endpoint.index === CHECKOUT && session.cart === 0 && CART_ADD >= 0) {
    endpoint = ENDPOINTS[CART_ADD];
  } else if (last && session.cart > 0 && CHECKOUT >= 0 && Math.random() < plan.conversion) {
    endpoint = ENDPOINTS[CHECKOUT];
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
