// Validates a Prisma schema with Prisma's own parser (the wasm build of prisma-fmt).
// Usage: node validate.js [--prisma 6|7] < schema.prisma
// Prints "valid" and exits 0, or prints Prisma's error and exits 1.
"use strict";

const fs = require("fs");

const flag = process.argv.indexOf("--prisma");
const major = flag === -1 ? "7" : process.argv[flag + 1];
const packages = { 6: "prisma-schema-wasm-6", 7: "@prisma/prisma-schema-wasm" };
if (!(major in packages)) {
  console.error(`unknown Prisma major version ${major}; expected one of ${Object.keys(packages)}`);
  process.exit(2);
}
const prisma = require(packages[major]);
const schema = fs.readFileSync(0, "utf8");

try {
  prisma.validate(JSON.stringify({ prismaSchema: schema, noColor: true }));
} catch (error) {
  let message = String(error && error.message ? error.message : error);
  try {
    message = JSON.parse(message).message; // errors come as {"error_code": "P1012", "message": "..."}
  } catch (_) {
    // not JSON: print it as it is
  }
  console.error(message);
  process.exit(1);
}
console.log("valid");
