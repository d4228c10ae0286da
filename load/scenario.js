// clickpulse sessions for k6: every virtual user plays sessions of one user type, from one
// region (its client address travels as X-Forwarded-For), with its own user id, session id and
// user agent; it browses, fills a cart, sometimes checks out, and thinks between requests.
// An arrival-rate executor (open model) holds the target request rate, whatever the latency.
// The plan (load/config.yaml, rendered by the Python runner) comes in CLICKPULSE_LOAD_PLAN.
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const plan = JSON.parse(open(__ENV.CLICKPULSE_LOAD_PLAN));

const sent = new Counter('clickpulse_sent');
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
    gracefulStop: '10s',
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
// Sub-metrics appear in the summary only when a threshold names them.
thresholds['clickpulse_sent{phase:steady}'] = ['count>=0'];
plan.endpoints.forEach((_, i) => { thresholds[`clickpulse_endpoint_${i}`] = ['max>=0']; });

export const options = {
  scenarios: { sessions: scenario() },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max', 'count'],
  discardResponseBodies: true,
  // An out-of-stock checkout is a normal business outcome, not a failed request.
  noConnectionReuse: false,
};
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
    userId: pick(plan.user_ids),
    id: uuid(),
    ip: addressIn(pickWeighted(plan.regions)),
    agent: pick(AGENTS),
    left: randInt(type.requests_min, type.requests_max),
    cart: 0,
  };
}

const find = (method, path) => plan.endpoints.findIndex((e) => e.method === method && e.path === path);
const CART_ADD = find('POST', '/cart');
const CHECKOUT = find('POST', '/checkout');

let session = null;

function call(endpoint) {
  const headers = {
    'X-User-Id': String(session.userId),
    'X-Session-Id': session.id,
    'X-Forwarded-For': session.ip,
    'User-Agent': session.agent,
    'X-Clickpulse-Run-Id': plan.run_id,
    'Content-Type': 'application/json',
  };
  let url = endpoint.base_url + endpoint.path;
  let body = null;
  if (endpoint.path === '/users') url += `?limit=20&offset=${randInt(0, 5) * 20}`;
  if (endpoint.path === '/products') url += `?limit=20&offset=${randInt(0, 3) * 20}`;
  url = url.replace('{user_id}', String(pick(plan.user_ids)))
    .replace('{product_id}', String(popularProduct()))
    .replace('{order_id}', '1');
  if (endpoint.method === 'POST' && endpoint.path === '/cart') {
    const quantity = randInt(1, 3);
    body = JSON.stringify({ product_id: popularProduct(), quantity });
    session.cart += quantity;
  }
  const tags = { name: `${endpoint.method} ${endpoint.path}`, phase: phase() };
  const response = http.request(endpoint.method, url, body, { headers, tags, timeout: '10s' });
  if (response.status !== 0) {
    sent.add(1, { phase: tags.phase });
    latency[endpoint.index].add(response.timings.duration);
  }
  if (endpoint.path === '/checkout' && response.status === 201) session.cart = 0;
}

function phase() {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  return elapsed >= plan.ramp_up_s ? 'steady' : 'ramp';
}

export default function () {
  if (session === null || session.left <= 0) session = newSession();
  let endpoint = pickWeighted(session.endpoints);
  const last = session.left === 1;
  if (endpoint.index === CHECKOUT && session.cart === 0 && CART_ADD >= 0) {
    endpoint = plan.endpoints[CART_ADD];
    endpoint = Object.assign({ index: CART_ADD }, endpoint);
  } else if (last && session.cart > 0 && CHECKOUT >= 0 && Math.random() < plan.conversion) {
    endpoint = Object.assign({ index: CHECKOUT }, plan.endpoints[CHECKOUT]);
  }
  call(endpoint);
  session.left -= 1;
  sleep(randFloat(session.type.think_min, session.type.think_max));
}

export function handleSummary(data) {
  return { [__ENV.CLICKPULSE_SUMMARY]: JSON.stringify(data) };
}
