// Adds the bearer token to every request the conformance suite makes (it sends none itself).
const token = process.env.SLICER_MCP_BEARER;
const plain = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
  headers.set("Authorization", `Bearer ${token}`);
  return plain(input, { ...init, headers });
};
