/* A form built from a JSON schema, validated in the browser (the slapos proxy's panel).
 *
 * SchemaForm.build(schema, value) -> {element, read()}; read() returns
 * {value, errors}, shows each error next to its field and marks the field invalid.
 * Handles what software release schemas use: objects (nested as fieldsets), strings,
 * integers, numbers, booleans, enums, defaults, required fields, arrays of plain values
 * (one per line); anything else (oneOf, arrays of objects, untyped) is edited as JSON
 * and checked by the same validator. The schema's top-level description heads the form; an
 * object schema that allows nothing says the release takes no parameters. The schema has no $ref left: the proxy resolved
 * them (slapos/proxy/release_files.py).
 */
"use strict";

const SchemaForm = (() => {
  let counter = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function typeOf(schema) {
    let type = schema.type;
    if (Array.isArray(type)) type = type.filter((t) => t !== "null")[0];
    if (!type && schema.properties) type = "object";
    if (!type && Array.isArray(schema.enum)) type = typeof schema.enum[0];
    return type;
  }

  function describe(value) {
    return JSON.stringify(value);
  }

  /* Problems of `value` against `schema`: [{path, message}] (a useful subset of JSON schema). */
  function validate(schema, value, path) {
    path = path || "";
    const problems = [];
    const add = (message) => problems.push({ path, message });
    if (!schema || typeof schema !== "object") return problems;
    const type = schema.type;
    const types = Array.isArray(type) ? type : type ? [type] : [];
    const actual = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
    if (types.length) {
      const ok = types.some((t) =>
        t === actual || (t === "integer" && actual === "number" && Number.isInteger(value)) ||
        (t === "number" && actual === "number"));
      if (!ok) {
        add(`must be ${types.join(" or ")}`);
        return problems;
      }
    }
    if (Array.isArray(schema.enum) && !schema.enum.some((e) => describe(e) === describe(value))) {
      add(`must be one of ${schema.enum.map(describe).join(", ")}`);
    }
    if ("const" in schema && describe(schema.const) !== describe(value)) {
      add(`must be ${describe(schema.const)}`);
    }
    if (actual === "number") {
      if (schema.minimum !== undefined && value < schema.minimum) add(`must be at least ${schema.minimum}`);
      if (schema.maximum !== undefined && value > schema.maximum) add(`must be at most ${schema.maximum}`);
      if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) add(`must be more than ${schema.exclusiveMinimum}`);
      if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum) add(`must be less than ${schema.exclusiveMaximum}`);
      if (schema.multipleOf && Math.abs(value / schema.multipleOf - Math.round(value / schema.multipleOf)) > 1e-9) add(`must be a multiple of ${schema.multipleOf}`);
    }
    if (actual === "string") {
      if (schema.minLength !== undefined && value.length < schema.minLength) add(`must have at least ${schema.minLength} characters`);
      if (schema.maxLength !== undefined && value.length > schema.maxLength) add(`must have at most ${schema.maxLength} characters`);
      if (schema.pattern) {
        try {
          if (!new RegExp(schema.pattern, "u").test(value)) add(`must match ${schema.pattern}`);
        } catch (error) { /* a pattern JavaScript cannot read is not checked here */ }
      }
    }
    if (actual === "array") {
      if (schema.minItems !== undefined && value.length < schema.minItems) add(`must have at least ${schema.minItems} items`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) add(`must have at most ${schema.maxItems} items`);
      if (schema.items && typeof schema.items === "object" && !Array.isArray(schema.items)) {
        value.forEach((item, i) => problems.push(...validate(schema.items, item, `${path}[${i}]`)));
      }
    }
    if (actual === "object") {
      for (const key of schema.required || []) {
        if (!(key in value)) problems.push({ path: path ? `${path}.${key}` : key, message: "is required" });
      }
      const properties = schema.properties || {};
      for (const [key, item] of Object.entries(value)) {
        const sub = path ? `${path}.${key}` : key;
        if (key in properties) problems.push(...validate(properties[key], item, sub));
        else if (schema.additionalProperties === false) problems.push({ path: sub, message: "is not allowed here" });
        else if (typeof schema.additionalProperties === "object") problems.push(...validate(schema.additionalProperties, item, sub));
      }
    }
    for (const sub of schema.allOf || []) problems.push(...validate(sub, value, path));
    for (const [word, wanted] of [["anyOf", (n) => n >= 1], ["oneOf", (n) => n === 1]]) {
      if (!Array.isArray(schema[word])) continue;
      const matching = schema[word].filter((sub) => validate(sub, value, path).length === 0).length;
      if (!wanted(matching)) add(word === "oneOf" ? "must match exactly one of the allowed forms" : "must match one of the allowed forms");
    }
    return problems;
  }

  function labelFor(name, schema, required, id) {
    const label = el("label", { for: id }, schema.title || name || "value");
    if (required) label.append(el("span", { className: "required", title: "required", text: " *" }));
    return label;
  }

  function help(schema) {
    return schema.description ? el("p", { className: "help", text: schema.description }) : null;
  }

  function showError(input, box, messages) {
    box.textContent = messages.join("; ");
    box.hidden = messages.length === 0;
    input.setAttribute("aria-invalid", messages.length ? "true" : "false");
    input.classList.toggle("invalid", messages.length > 0);
  }

  /* One field: {element, read(errors) -> value or undefined}. */
  function field(name, schema, value, required, path) {
    const type = typeOf(schema);
    if (type === "object" && schema.properties && !schema.oneOf && !schema.anyOf) {
      return objectField(name, schema, value, required, path);
    }
    const id = `sf-${++counter}`;
    const errorBox = el("p", { className: "field-error", id: `${id}-error`, hidden: true, "aria-live": "polite" });
    const initial = value !== undefined ? value : schema.default;
    let input;
    let get;
    if (Array.isArray(schema.enum) && schema.enum.length) {
      input = el("select", { id, name: path });
      if (!required || initial === undefined) input.append(el("option", { value: "", text: "—" }));
      schema.enum.forEach((option, i) => {
        const opt = el("option", { value: String(i), text: String(option) });
        if (initial !== undefined && describe(option) === describe(initial)) opt.selected = true;
        input.append(opt);
      });
      get = () => (input.value === "" ? undefined : schema.enum[Number(input.value)]);
    } else if (type === "boolean" && initial === undefined && !required) {
      // no default: "not set" must stay possible, a checkbox would always send false
      input = el("select", { id, name: path });
      for (const [value, text] of [["", "—"], ["true", "true"], ["false", "false"]]) input.append(el("option", { value, text }));
      get = () => (input.value === "" ? undefined : input.value === "true");
    } else if (type === "boolean") {
      input = el("input", { id, name: path, type: "checkbox" });
      input.checked = initial === true || initial === "true";
      get = () => input.checked;
    } else if (type === "integer" || type === "number") {
      input = el("input", { id, name: path, type: "text", inputmode: type === "integer" ? "numeric" : "decimal" });
      if (initial !== undefined) input.value = String(initial);
      get = () => {
        const text = input.value.trim();
        if (text === "") return undefined;
        const number = Number(text);
        if (!Number.isFinite(number)) throw new Error(`must be a ${type === "integer" ? "whole number" : "number"}`);
        if (type === "integer" && !Number.isInteger(number)) throw new Error("must be a whole number");
        return number;
      };
    } else if (type === "string") {
      const long = (schema.maxLength || 0) > 200 || schema.format === "textarea" || /\n/.test(initial || "");
      input = el(long ? "textarea" : "input", { id, name: path, rows: long ? 4 : undefined, type: long ? undefined : (schema.format === "password" ? "password" : "text") });
      if (initial !== undefined) input.value = String(initial);
      get = () => (input.value === "" ? undefined : input.value);
    } else if (type === "array" && schema.items && ["string", "integer", "number"].includes(typeOf(schema.items))) {
      const itemType = typeOf(schema.items);
      input = el("textarea", { id, name: path, rows: 3, placeholder: "one value per line" });
      if (Array.isArray(initial)) input.value = initial.join("\n");
      get = () => {
        const lines = input.value.split("\n").map((l) => l.trim()).filter((l) => l !== "");
        if (!lines.length) return undefined;
        if (itemType === "string") return lines;
        return lines.map((line) => {
          const number = Number(line);
          if (!Number.isFinite(number) || (itemType === "integer" && !Number.isInteger(number))) throw new Error(`"${line}" is not a ${itemType === "integer" ? "whole number" : "number"}`);
          return number;
        });
      };
    } else {
      input = el("textarea", { id, name: path, rows: 4, className: "code", placeholder: "JSON" });
      if (initial !== undefined) input.value = JSON.stringify(initial, null, 2);
      get = () => {
        if (input.value.trim() === "") return undefined;
        try {
          return JSON.parse(input.value);
        } catch (error) {
          throw new Error("is not valid JSON");
        }
      };
    }
    input.setAttribute("aria-describedby", `${id}-error`);
    const wrapper = el("div", { className: `field field-${type || "json"}` });
    if (type === "boolean" && input.type === "checkbox") {
      const label = labelFor(name, schema, required, id);
      label.prepend(input);
      label.classList.add("check");
      wrapper.append(label);
    } else {
      wrapper.append(labelFor(name, schema, required, id), input);
    }
    wrapper.append(errorBox);
    const text = help(schema);
    if (text) wrapper.append(text);
    return {
      element: wrapper,
      read(errors) {
        let result;
        const messages = [];
        try {
          result = get();
        } catch (error) {
          messages.push(error.message);
        }
        if (!messages.length && result === undefined && required) messages.push("is required");
        if (!messages.length && result !== undefined) {
          for (const problem of validate(schema, result, "")) {
            messages.push(problem.path ? `${problem.path} ${problem.message}` : problem.message);
          }
        }
        showError(input, errorBox, messages);
        for (const message of messages) errors.push({ path, message, input });
        return result;
      },
    };
  }

  function objectField(name, schema, value, required, path) {
    const current = value && typeof value === "object" ? value : schema.default || {};
    const requiredKeys = new Set(schema.required || []);
    const box = el(path ? "fieldset" : "div", { className: path ? "group" : "fields" });
    if (path) box.append(el("legend", { text: schema.title || name }));
    const text = help(schema);
    if (text && path) box.append(text);
    const children = Object.entries(schema.properties).map(([key, sub]) => {
      const child = field(key, sub || {}, current[key], requiredKeys.has(key), path ? `${path}.${key}` : key);
      box.append(child.element);
      return [key, child];
    });
    const known = new Set(Object.keys(schema.properties));
    const extra = Object.fromEntries(Object.entries(current).filter(([key]) => !known.has(key)));
    return {
      element: box,
      read(errors) {
        const result = { ...extra };
        for (const [key, child] of children) {
          const item = child.read(errors);
          if (item !== undefined) result[key] = item;
        }
        if (!Object.keys(result).length && !required && path) return undefined;
        return result;
      },
    };
  }

  /* The schema of a release that takes no parameters: an object with nothing allowed. */
  function noParameters(value) {
    const current = value && typeof value === "object" ? value : {};
    const note = el("p", { className: "no-parameters", text: "This release takes no parameters." });
    // anything already set (an update) is kept, and the validator then says it is not allowed
    return { element: el("div", { className: "fields" }, note), read: () => ({ ...current }) };
  }

  function build(schema, value) {
    const object = typeOf(schema) === "object" && schema.properties;
    const named = object && Object.keys(schema.properties).length > 0;
    const root = named || (object && schema.additionalProperties === false) ? schema : null;
    let form;
    if (named) form = objectField("", root, value, true, "");
    else if (root) form = noParameters(value);
    else form = field("parameters", schema, value, false, "_");
    // the schema's own description says what the parameters are for (nested objects and
    // the single-field form show theirs already)
    const intro = root ? help(root) : null;
    return {
      element: intro ? el("div", { className: "schema-form" }, intro, form.element) : form.element,
      read() {
        const errors = [];
        let result = form.read(errors);
        if (result === undefined) result = {};
        if (!errors.length && root) {
          for (const problem of validate(root, result, "")) errors.push({ path: problem.path, message: problem.message, input: null });
        }
        return { value: result, errors };
      },
    };
  }

  return { build, validate };
})();
