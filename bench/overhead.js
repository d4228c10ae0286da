// Closed-model throughput probe for the instrumentation-overhead benchmark: VUS virtual users
// request one endpoint back to back for DURATION; the runner compares telemetry on and off.
import http from 'k6/http';

export const options = {
  vus: Number(__ENV.VUS || 20),
  duration: __ENV.DURATION || '10s',
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

// TARGET is a path ("/products?limit=20"); without it, a random product of the first 50.
export default function () {
  const path = __ENV.TARGET || `/products/${1 + Math.floor(Math.random() * 50)}`;
  http.get(`${__ENV.BASE_URL}${path}`);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
