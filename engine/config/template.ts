/**
 * `*.tmpl` files of the rootfs, rendered with the cluster's env (spec.env). The syntax is the subset of Go
 * templates sealer images use: `{{ .Name }}` and `{{ .Name | default "value" }}`; anything else between `{{` and
 * `}}` is refused rather than copied through, so a template never ships half-rendered.
 */

export class TemplateError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

const ACTION = /\{\{(.*?)\}\}/gs;
const REF = /^\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*default\s+"((?:[^"\\]|\\.)*)"\s*)?$/s;

export function renderTemplate(text: string, env: Record<string, string>): string {
  const lineAt = (offset: number) => text.slice(0, offset).split('\n').length;
  const out = text.replace(ACTION, (whole, inner: string, offset: number) => {
    const m = REF.exec(inner);
    if (!m) {
      throw new TemplateError(lineAt(offset), `unsupported template syntax ${JSON.stringify(whole.length > 60 ? whole.slice(0, 57) + '...' : whole)}: only {{ .Name }} and {{ .Name | default "value" }} are supported`);
    }
    const [, key, fallback] = m;
    if (Object.hasOwn(env, key)) return env[key];
    if (fallback !== undefined) return JSON.parse(`"${fallback}"`) as string;
    throw new TemplateError(lineAt(offset), `{{ .${key} }} names ${key}, which is not in the cluster's spec.env: add ${key}=... there, or write {{ .${key} | default "value" }}`);
  });
  // An unclosed `{{` of the template itself (the values put in are not rescanned).
  const stray = text.replace(ACTION, (w) => ' '.repeat(w.length)).indexOf('{{');
  if (stray >= 0) throw new TemplateError(lineAt(stray), 'a "{{" is never closed with "}}"');
  return out;
}

export const TEMPLATE_SUFFIX = '.tmpl';
