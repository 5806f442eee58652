import type { Action } from './actions.js';

/**
 * The steps of a plan being made, by id and in the order they were first planned: a Map's lookups, plus the
 * position of each id in `list()`. Ordering the plan reads a dep's position from here instead of building a second
 * map of 200,000 ids (a fifth of a 50,000-host plan went to that). A step planned again under the same id keeps
 * its place, as in a Map.
 */
export class ActionTable {
  private readonly slot = new Map<string, number>();
  private readonly steps: Action[] = [];

  get size(): number {
    return this.steps.length;
  }

  has(id: string): boolean {
    return this.slot.has(id);
  }

  get(id: string): Action | undefined {
    const i = this.slot.get(id);
    return i === undefined ? undefined : this.steps[i];
  }

  set(a: Action): void {
    const i = this.slot.get(a.id);
    if (i === undefined) {
      this.slot.set(a.id, this.steps.length);
      this.steps.push(a);
    } else this.steps[i] = a;
  }

  /** Where the step of `id` is in `list()`, or undefined when no step has it. */
  indexOf = (id: string): number | undefined => this.slot.get(id);

  values(): IterableIterator<Action> {
    return this.steps.values();
  }

  /** The steps in the order first planned; the table's own array, so read it, never change it. */
  list(): readonly Action[] {
    return this.steps;
  }

  ids(): string[] {
    const out: string[] = new Array(this.steps.length);
    for (let i = 0; i < out.length; i++) out[i] = this.steps[i].id;
    return out;
  }
}
