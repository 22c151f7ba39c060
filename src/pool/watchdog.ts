/**
 * The pool's watchdog: a timer on the pool's thread (guest code never runs there, so it keeps
 * ticking while every worker computes) that inspects the workers every `everyMs`.
 */
export class Watchdog {
  private readonly timer: NodeJS.Timeout;

  constructor(everyMs: number, inspect: () => void) {
    this.timer = setInterval(inspect, everyMs);
    // The pool's workers keep the process alive while it is open; the watchdog alone does not.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
