#!/usr/bin/python3
"""Training benchmark driver (see run.sh): runs the measurements against the
cluster in PGHOST/PGPORT and prints a markdown report.

1. Samples per second of a training epoch (rollout + PPO updates, default
   hyper-parameters, one thread) of the rl_mlops worker against the same
   epoch in plain PyTorch (ppo_torch.py) on the same data exported to CSV,
   and the holdout log return each reaches after the same number of epochs.
2. Wall time of a weekly incremental retrain (incremental_epochs = 5) on 30
   days of 1-minute bars for 10 symbols (432,000 rows) after an initial
   training, with the time of each step from the worker's log lines.

Besides wall-clock rates, both sides report samples per CPU-second (the
worker's CPU time read from /proc/<pid>/stat at each of its epoch log
lines, PyTorch's from time.process_time()): on a shared machine the load
of other processes changes wall-clock rates a lot and CPU time much less.
"""
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOG = os.environ['SERVER_LOG']
WORK = os.environ['BENCH_WORK']
EPOCHS = int(os.environ.get('EPOCHS', '10'))
SEEDS = [int(s) for s in os.environ.get('SEEDS', '1 2 3').split()]
SYMBOLS = int(os.environ.get('SYMBOLS', '10'))
BARS = int(os.environ.get('BARS', '10000'))
WEEKLY_REPS = int(os.environ.get('WEEKLY_REPS', '3'))
WEEKLY_INITIAL_EPOCHS = int(os.environ.get('WEEKLY_INITIAL_EPOCHS', '5'))
SKIP_WEEKLY = os.environ.get('SKIP_WEEKLY', '') != ''
SKIP_EPOCH = os.environ.get('SKIP_EPOCH', '') != ''
TICK = os.sysconf('SC_CLK_TCK')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def psql(sql, check=True):
    r = subprocess.run(['psql', '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres', '-c', sql],
                       capture_output=True, text=True)
    if r.returncode != 0 and check:
        sys.exit('psql failed: %s\n%s' % (sql, r.stderr))
    return r.stdout.strip(), r.stderr, r.returncode


def q(sql):
    return psql(sql)[0]


def load1():
    return open('/proc/loadavg').read().split(' ')[0]


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), or None once it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return None


def wait_server():
    for _ in range(120):
        if psql('SELECT 1', check=False)[2] == 0:
            return
        time.sleep(1)
    sys.exit('the server did not come back')


STEP_MARKS = [('data', 'rl_mlops: Step 1: Preparing training data'),
              ('training', 'rl_mlops: Step 2: Training model'),
              ('validation', 'rl_mlops: Step 3: Validating new model'),
              ('deployment', 'rl_mlops: Step 4: Deploying new model'),
              ('end', 'rl_mlops: Retraining complete!')]


def monitored_retrain(args, attempts=3):
    """Start a run (async), follow the worker's log lines and CPU time until
    it ends.  Returns a dict: run, wall (call to the last log line), per-epoch
    wall and CPU rates, step durations, the run row.  A lost connection (a
    crash restart, say because the extension's libraries were reinstalled
    under the running server by someone else) is retried."""
    for attempt in range(attempts):
        res = _monitored_retrain(args)
        if res is not None:
            return res
        log('  retrain(%s) was lost (crash restart?), retrying' % args)
        wait_server()
    sys.exit('retrain(%s) failed %d times' % (args, attempts))


def _monitored_retrain(args):
    pos = os.path.getsize(LOG)
    t0 = time.perf_counter()
    out, err, rc = psql("SELECT rl_mlops.retrain(%s)" % args, check=False)
    if rc != 0:
        if 'server closed the connection' in err:
            return None
        sys.exit('retrain(%s): %s' % (args, err))
    run = int(out)
    pid = int(q("SELECT worker_pid FROM rl_mlops.runs WHERE id = %d" % run))
    epoch_re = re.compile(r'rl_mlops: run %d epoch (\d+)/\d+: loss \S+, (\d+) samples/s' % run)
    marks = {}
    cpu_at = {}
    rates = []
    epoch_cpu = []
    ended = None

    def follow(line):
        nonlocal ended
        if '[%d]' % pid not in line:
            return
        c = cpu_seconds(pid)
        for name, text in STEP_MARKS:
            if text in line and name not in marks:
                marks[name] = datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S.%f')
                cpu_at[name] = c
        m = epoch_re.search(line)
        if m:
            rates.append(float(m.group(2)))
            epoch_cpu.append(c)
        if 'Retraining complete!' in line or 'Keeping current model active' in line:
            ended = 'done'

    buf = ''
    gone_since = None
    with open(LOG) as f:
        f.seek(pos)
        while ended is None:
            chunk = f.readline()
            if chunk:
                buf += chunk
                if buf.endswith('\n'):
                    follow(buf)
                    buf = ''
                continue
            if cpu_seconds(pid) is None:
                gone_since = gone_since or time.perf_counter()
                if time.perf_counter() - gone_since > 2:
                    ended = 'gone'
            time.sleep(0.01)
    wall = time.perf_counter() - t0
    # wait for the run's final state (committed before the last log line)
    for _ in range(600):
        out, err, rc = psql("SELECT state FROM rl_mlops.runs WHERE id = %d" % run, check=False)
        if rc != 0:
            return None
        if out in ('succeeded', 'rejected', 'failed', 'cancelled'):
            break
        time.sleep(0.1)
    if out != 'succeeded':
        if ended == 'gone' and 'terminated by signal' in open(LOG).read()[pos:]:
            return None
        sys.exit('run %d of retrain(%s) ended %s' % (run, args, out))
    row = json.loads(q("SELECT row_to_json(r) FROM rl_mlops.runs r WHERE id = %d" % run))
    names = [n for n, _ in STEP_MARKS]
    steps = {names[i]: (marks[names[i + 1]] - marks[names[i]]).total_seconds()
             for i in range(len(names) - 1)}
    cpu_rates = []
    prev = cpu_at.get('training')
    for c in epoch_cpu:
        if prev is not None and c is not None and c > prev:
            cpu_rates.append(row['samples'] / (c - prev))
        prev = c
    return {'run': run, 'wall': wall, 'rates': rates, 'cpu_rates': cpu_rates, 'steps': steps,
            'row': row, 'load': load1(),
            'cpu_total': max([x for x in cpu_at.values() if x is not None] or [0])}


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def part1(report):
    log('part 1: %d symbols x %d bars, %d epochs, seeds %s' % (SYMBOLS, BARS, EPOCHS, SEEDS))
    q("CREATE TABLE bars AS SELECT * FROM rl_mlops.synthetic_bars(%d, %d, 0.25, 0.01, "
      "'2026-01-01', '1 minute', 0.42)" % (SYMBOLS, BARS))
    csv_path = os.path.join(WORK, 'bars.csv')
    q("\\copy (SELECT symbol, extract(epoch FROM ts), price FROM bars ORDER BY symbol, ts) "
      "TO '%s' CSV" % csv_path)
    q("SELECT rl_mlops.create_agent('bench', 'bars') IS NULL")
    q("SELECT rl_mlops.configure('bench', initial_epochs => %d, threads => 1) IS NULL" % EPOCHS)

    # interleaved (worker, then PyTorch, per seed): both see the same load
    ours = []
    torch_runs = []
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')
    for seed in SEEDS:
        q("SELECT rl_mlops.configure('bench', seed => %d) IS NULL" % seed)
        r = monitored_retrain("'bench', full => true")
        m = json.loads(q("SELECT metrics FROM rl_mlops.models WHERE agent = 'bench' AND version = '%s'"
                         % r['row']['produced_version']))
        ours.append({'seed': seed, 'rates': r['rates'], 'cpu_rates': r['cpu_rates'],
                     'samples': r['row']['samples'],
                     'holdout': m['holdout']['total_log_return'],
                     'initial': m['initial']['total_log_return'],
                     'buy_hold': m['holdout']['buy_hold_log_return'], 'load': r['load']})
        log('  worker  seed %d: median %.0f samples/s, %.0f per CPU-second, holdout %.3f, load %s'
            % (seed, med(r['rates']), med(r['cpu_rates']), ours[-1]['holdout'], r['load']))

        p = subprocess.run(['/usr/bin/python3', os.path.join(HERE, 'ppo_torch.py'), csv_path,
                            '--epochs', str(EPOCHS), '--seed', str(seed), '--threads', '1'],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit('ppo_torch.py failed: ' + p.stderr)
        d = json.loads(p.stdout)
        torch_runs.append({'seed': seed, 'rates': [e['samples_per_second'] for e in d['epochs']],
                           'cpu_rates': [e['samples_per_cpu_second'] for e in d['epochs']],
                           'samples': d['samples'],
                           'rollout_share': sum(e['rollout_seconds'] for e in d['epochs'])
                           / sum(e['seconds'] for e in d['epochs']),
                           'holdout': d['holdout']['total_log_return'],
                           'initial': d['initial']['total_log_return'],
                           'buy_hold': d['holdout']['buy_hold_log_return'], 'load': load1()})
        t = torch_runs[-1]
        log('  PyTorch seed %d: median %.0f samples/s, %.0f per CPU-second, holdout %.3f, load %s'
            % (seed, med(t['rates']), med(t['cpu_rates']), t['holdout'], t['load']))

    same_init = all(abs(o['initial'] - t['initial']) < 1e-6 for o, t in zip(ours, torch_runs))
    same_samples = all(o['samples'] == t['samples'] for o, t in zip(ours, torch_runs))
    report.append('')
    report.append('### 1. One training epoch: rl_mlops worker vs PyTorch (one thread)')
    report.append('')
    report.append('%d symbols x %d one-minute bars (AR(1) log returns, phi 0.25), %d training '
                  'decisions per epoch, %d epochs from scratch per run, seeds %s, worker and '
                  'PyTorch interleaved per seed.'
                  % (SYMBOLS, BARS, ours[0]['samples'], EPOCHS, ', '.join(map(str, SEEDS))))
    report.append('Same samples per epoch in both: %s. Same untrained network and environment '
                  '(the untrained holdout log return agrees to 1e-6 for every seed): %s.'
                  % ('yes' if same_samples else 'NO', 'yes' if same_init else 'NO'))
    report.append('')
    report.append('| | samples/s, wall clock (median of per-run medians) | per run | '
                  'samples per CPU-second (median) | per run | '
                  'holdout log return after %d epochs (median) | per seed |' % EPOCHS)
    report.append('| --- | ---: | --- | ---: | --- | ---: | --- |')
    for name, runs in (('rl_mlops worker (libtorch, C rollout)', ours),
                       ('PyTorch script (ppo_torch.py)', torch_runs)):
        report.append('| %s | %.0f | %s | %.0f | %s | %.3f | %s |' % (
            name, med([med(r['rates']) for r in runs]),
            ', '.join('%.0f' % med(r['rates']) for r in runs),
            med([med(r['cpu_rates']) for r in runs]),
            ', '.join('%.0f' % med(r['cpu_rates']) for r in runs),
            med([r['holdout'] for r in runs]),
            ', '.join('%.3f' % r['holdout'] for r in runs)))
    report.append('')
    report.append('Worker / PyTorch per seed: wall clock %s, CPU %s. 1-minute load average '
                  'after each run: worker %s, PyTorch %s.' % (
                      ', '.join('%.2f' % (med(o['rates']) / med(t['rates'])) for o, t in zip(ours, torch_runs)),
                      ', '.join('%.2f' % (med(o['cpu_rates']) / med(t['cpu_rates']))
                                for o, t in zip(ours, torch_runs)),
                      ', '.join(o['load'] for o in ours), ', '.join(t['load'] for t in torch_runs)))
    report.append('Untrained network on the holdout: %s; buy and hold: %.3f. PyTorch spends '
                  '%.0f%% of its epoch in the rollout (with GAE).'
                  % (', '.join('%.3f' % o['initial'] for o in ours), ours[0]['buy_hold'],
                     100 * med([t['rollout_share'] for t in torch_runs])))


def part2(report):
    log('part 2: weekly retrain, 10 symbols x 43200 bars')
    q("CREATE TABLE week AS SELECT * FROM rl_mlops.synthetic_bars(10, 43200, 0.25, 0.001, "
      "'2026-01-01', '1 minute', 0.17)")
    rows = int(q('SELECT count(*) FROM week'))
    q("SELECT rl_mlops.create_agent('weekly', 'week') IS NULL")
    load_start = load1()
    r0 = monitored_retrain("'weekly', epochs => %d" % WEEKLY_INITIAL_EPOCHS)
    log('  initial training: %.1f s' % r0['wall'])
    reps = []
    for i in range(WEEKLY_REPS):
        r = monitored_retrain("'weekly'")
        reps.append(r)
        log('  weekly retrain %d: %.1f s, %.1f CPU s, %s, load %s'
            % (i + 1, r['wall'], r['cpu_total'], r['steps'], r['load']))
    # control: the same number of epochs from scratch on the same data
    rf = monitored_retrain("'weekly', full => true, epochs => %d" % reps[0]['row']['epochs'])
    log('  control, from scratch: %.1f s %s' % (rf['wall'], rf['steps']))

    report.append('')
    report.append('### 2. Weekly incremental retrain')
    report.append('')
    report.append('%d rows (10 symbols x 30 days of 1-minute bars), data_window 30 days, '
                  'holdout 20%%: %d training decisions per epoch. Initial training %d epochs '
                  '(%.1f s), then %d incremental retrains of %d epochs (incremental_epochs), '
                  'each warm-started from the previous one. 1-minute load average at the start: %s.'
                  % (rows, reps[0]['row']['samples'], WEEKLY_INITIAL_EPOCHS, r0['wall'], WEEKLY_REPS,
                     reps[0]['row']['epochs'], load_start))
    report.append('')
    report.append('| | median | runs |')
    report.append('| --- | ---: | --- |')
    report.append('| wall time, `retrain()` call to the worker\'s last log line (s) | %.1f | %s |'
                  % (med([r['wall'] for r in reps]), ', '.join('%.1f' % r['wall'] for r in reps)))
    report.append('| worker CPU time (s) | %.1f | %s |'
                  % (med([r['cpu_total'] for r in reps]), ', '.join('%.1f' % r['cpu_total'] for r in reps)))
    for k, label in (('data', 'step 1, reading and preparing the data'),
                     ('training', 'step 2, training'),
                     ('validation', 'step 3, registering and validating (incl. holdout backtests)'),
                     ('deployment', 'step 4, deploying')):
        report.append('| %s (s) | %.2f | %s |' % (label, med([r['steps'][k] for r in reps]),
                                                 ', '.join('%.2f' % r['steps'][k] for r in reps)))
    report.append('| samples/s in training, wall clock | %.0f | %s |'
                  % (med([med(r['rates']) for r in reps]),
                     ', '.join('%.0f' % med(r['rates']) for r in reps)))
    report.append('| samples per CPU-second in training | %.0f | %s |'
                  % (med([med(r['cpu_rates']) for r in reps]),
                     ', '.join('%.0f' % med(r['cpu_rates']) for r in reps)))
    report.append('| 1-minute load average after the run | | %s |' % ', '.join(r['load'] for r in reps))
    report.append('')
    report.append('Control, the same %d epochs from scratch (`full => true`) right after: wall %.1f s, '
                  'training %.2f s, %.0f samples/s, %.0f per CPU-second (load %s).'
                  % (rf['row']['epochs'], rf['wall'], rf['steps']['training'], med(rf['rates']),
                     med(rf['cpu_rates']), rf['load']))


def main():
    report = []
    cpu = subprocess.run(['sh', '-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    report.append('Machine: %s, %d cores (nproc), %s; %s; Debian libtorch / python3-torch 1.13.'
                  % (cpu, os.cpu_count(),
                     subprocess.run(['uname', '-sr'], capture_output=True, text=True).stdout.strip(),
                     q('SELECT version()').split(' on ')[0]))
    report.append('1-minute load average at the start: %s.' % load1())
    if not SKIP_EPOCH:
        part1(report)
    if not SKIP_WEEKLY:
        part2(report)
    print('\n'.join(report))


if __name__ == '__main__':
    main()
