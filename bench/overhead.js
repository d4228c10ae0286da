// Closed-model throughput probe for the instrumentation-overhead benchmark: VUS virtual users
// request one endpoint back to back for DURATION; the runner compares telemetry on and off.
import http from 'k6/http';

export const options = {
  vus: Number(__ENV.VUS || 20),
  duration: __ENV.DURATION || '10s',
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

// TARGET is a path ("/products?limit=20"); without it, a random one of PRODUCT_IDS.
const PRODUCT_IDS = (__ENV.PRODUCT_IDS || '1').split(',');

export default function () {
  const path =
    __ENV.TARGET || `/products/${PRODUCT_IDS[Math.floor(Math.random() * PRODUCT_IDS.length)]}`;
  http.get(`${__ENV.BASE_URL}${path}`);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
