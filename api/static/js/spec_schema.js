/**
 * The spec's JSON schema (json_schema of GET /v1/spec, as pydantic writes it) read the way the spec
 * form needs: $ref resolution through $defs, an object's properties, a layer's schema by its type,
 * the kind of control that edits a field, and a field's bounds as text.
 */

export class SpecSchema {
  constructor(root) {
    this.root = root;
  }

  /** node with its chain of $refs followed to the definition; {} for none. */
  resolve(node) {
    while (node && node.$ref) node = this.root.$defs[node.$ref.split("/").pop()];
    return node || {};
  }

  /** The properties of an object schema (after resolving it); {} for none. */
  properties(node) {
    return this.resolve(node).properties || {};
  }

  /**
   * The schema of a layer: the anyOf/oneOf member of network.layers' items whose `type` const is the
   * layer's type (dense if unset), else the first member.
   */
  layer(layer) {
    const items = this.resolve(this.resolve(this.properties(this.root.properties.network).layers).items);
    const options = items.anyOf || items.oneOf || [items];
    return this.resolve(options.map((o) => this.resolve(o))
      .find((o) => o.properties && o.properties.type && o.properties.type.const === (layer.type || "dense")) || options[0]);
  }

  /**
   * The control for a field of schema node holding value:
   * {kind: "enum", values} for an enum (or an anyOf with one), {kind: "boolean"},
   * {kind: "json", nullable} for an array, {kind: "number", integer, nullable}, else {kind: "text", nullable};
   * nullable when the schema allows null, integer when it allows integers but not other numbers.
   */
  fieldKind(node, value) {
    node = this.resolve(node);
    const options = node.anyOf || [];
    const enumValues = node.enum || (options.find((o) => o.enum) || {}).enum;
    if (enumValues) return { kind: "enum", values: enumValues };
    const types = new Set([node.type, ...options.map((o) => o.type)].filter(Boolean));
    if (types.has("boolean") || typeof value === "boolean") return { kind: "boolean" };
    if (types.has("array") || Array.isArray(value)) return { kind: "json", nullable: types.has("null") };
    if (types.has("integer") || types.has("number") || typeof value === "number") {
      return { kind: "number", integer: types.has("integer") && !types.has("number"), nullable: types.has("null") };
    }
    return { kind: "text", nullable: types.has("null") };
  }
}

/** A resolved field schema's bounds as text, e.g. "≥ 1, ≤ 10" ("" for none). */
export function bounds(node) {
  const parts = [];
  if (node.minimum !== undefined) parts.push(`≥ ${node.minimum}`);
  if (node.exclusiveMinimum !== undefined) parts.push(`> ${node.exclusiveMinimum}`);
  if (node.maximum !== undefined) parts.push(`≤ ${node.maximum}`);
  return parts.join(", ");
}
