/** A uPlot line chart over time, updated in place as new samples arrive. */
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { time } from './format.js';

export interface Series {
  label: string;
  /** A class-free colour: uPlot draws on a canvas. */
  stroke: string;
}

/** The indices of a series' samples with no sample on either side, to draw as points. */
function lonePoints(u: uPlot, seriesIdx: number): number[] {
  const values = u.data[seriesIdx] ?? [];
  const missing = (i: number) => values[i] === null || values[i] === undefined;
  const lone: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (!missing(i) && missing(i - 1) && missing(i + 1)) lone.push(i);
  }
  return lone;
}

export function Chart(props: {
  testid: string;
  title: string;
  unit: string;
  series: Series[];
  /** x: seconds since the epoch; then one array per series. */
  data: [number[], ...(number | null)[][]];
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const { series, unit } = props;
  useEffect(() => {
    if (!box.current) return;
    const chart = new uPlot(
      {
        width: Math.max(box.current.clientWidth, 300),
        height: 180,
        legend: { show: true },
        // In UTC, as every time the console shows and reads.
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [{}, { label: unit, size: 60 }],
        series: [
          {
            label: 'UTC',
            value: (_u, ts) => (ts === null ? '' : time(new Date(ts * 1000).toISOString())),
          },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.stroke,
            width: 2,
            spanGaps: false,
            // A line needs two samples: one alone between gaps (a single burst of traffic,
            // the only latency a quiet dispatcher measured) is drawn as a point.
            points: { show: true, filter: lonePoints },
          })),
        ],
      },
      [[]],
      box.current,
    );
    plot.current = chart;
    const onResize = () => {
      if (box.current)
        chart.setSize({ width: Math.max(box.current.clientWidth, 300), height: 180 });
    };
    addEventListener('resize', onResize);
    return () => {
      removeEventListener('resize', onResize);
      chart.destroy();
      plot.current = undefined;
    };
  }, [series, unit]);
  useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);
  return (
    <section class="chart" data-testid={props.testid}>
      <h3>{props.title}</h3>
      <div ref={box} />
    </section>
  );
}
