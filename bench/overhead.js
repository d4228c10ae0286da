// Throughput probe for the instrumentation-overhead benchmark: VUS virtual users request one
// endpoint back to back for DURATION (closed model); or, with RATE, RATE requests a second
// whatever the answers take (open model: the service's CPU a request, below saturation). The
// runner compares telemetry on and off.
import http from 'k6/http';

const RATE = Number(__ENV.RATE || 0);
const DURATION = __ENV.DURATION || '10s';

export const options = {
  ...(RATE > 0
    ? {
        scenarios: {
          fixed_rate: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            preAllocatedVUs: 50,
            maxVUs: 200,
          },
        },
      }
    : { vus: Number(__ENV.VUS || 20), duration: DURATION }),
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
