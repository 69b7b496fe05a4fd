// The eight GitHub operations that govern fine-grained personal access tokens, called through
// octokit (`@octokit/rest` + `@octokit/auth-app`, pinned in package.json) against a patgate
// server, the way a GitHub App would: JWT, installation lookup, installation token, then the
// `octokit.rest.orgs.*Pat*` methods and `octokit.paginate`. Driven by tests/clients/test_octokit.py.
//
// Environment (all required but the last):
//   OCTOKIT_BASE_URL          http://127.0.0.1:PORT/api/v3  (no trailing slash: octokit breaks)
//   OCTOKIT_APP_ID            the app's id
//   OCTOKIT_PRIVATE_KEY_PATH  its private key (PKCS#1 PEM)
//   OCTOKIT_ORG               the organization's login
//   OCTOKIT_API_VERSION       optional: sent as X-GitHub-Api-Version (octokit sends none)
// Arguments (ids are comma-separated; every one is optional):
//   --owner LOGIN,...         owner filter for a second listPatGrantRequests (octokit: owner=a,b)
//   --per-page N              page size for octokit.paginate over both lists (default 2)
//   --review ID=ACTION        reviewPatGrantRequest, ACTION approve or deny
//   --bulk-review IDS=ACTION  reviewPatGrantRequestsInBulk
//   --conflict IDS            reviewPatGrantRequestsInBulk (approve) that must fail: its status
//                             and body are reported, not raised
//   --revoke GRANT_ID         updatePatAccess (revoke)
//   --bulk-revoke GRANT_IDS   updatePatAccesses (revoke)
//   --reason TEXT             the reason sent with the reviews
//
// Prints one JSON object on stdout: {installation_id, app, operations: {name: {status, url,
// link, api_version, data}}}. Any unexpected error: the error on stderr, exit status 1.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function ids(text) {
  return text
    .split(",")
    .filter((part) => part.trim() !== "")
    .map((part) => {
      const id = Number(part);
      if (!Number.isSafeInteger(id) || id < 1) throw new Error(`not an id: ${part}`);
      return id;
    });
}

function idsWithAction(text) {
  const [list, action] = text.split("=");
  if (action !== "approve" && action !== "deny") throw new Error(`not IDS=approve|deny: ${text}`);
  return { ids: ids(list), action };
}

function report(response) {
  return {
    status: response.status,
    url: response.url,
    link: response.headers.link ?? null,
    api_version: response.headers["x-github-api-version-selected"] ?? null,
    data: response.data ?? null,
  };
}

async function paginate(octokit, method, params) {
  const pages = [];
  const items = await octokit.paginate(method, params, (response) => {
    pages.push({ status: response.status, url: response.url, count: response.data.length });
    return response.data;
  });
  return { pages, data: items };
}

async function main() {
  const baseUrl = required("OCTOKIT_BASE_URL");
  if (baseUrl.endsWith("/")) throw new Error("OCTOKIT_BASE_URL must not end with a slash");
  const appId = Number(required("OCTOKIT_APP_ID"));
  const privateKey = readFileSync(required("OCTOKIT_PRIVATE_KEY_PATH"), "utf8");
  const org = required("OCTOKIT_ORG");
  const apiVersion = process.env.OCTOKIT_API_VERSION || null;
  const { values: args } = parseArgs({
    options: {
      owner: { type: "string" },
      "per-page": { type: "string", default: "2" },
      review: { type: "string" },
      "bulk-review": { type: "string" },
      conflict: { type: "string" },
      revoke: { type: "string" },
      "bulk-revoke": { type: "string" },
      reason: { type: "string" },
    },
    strict: true,
  });
  const perPage = Number(args["per-page"]);
  const reason = args.reason ?? null;

  function client(auth) {
    const octokit = new Octokit({ authStrategy: createAppAuth, auth, baseUrl });
    if (apiVersion) {
      octokit.hook.before("request", (options) => {
        options.headers["x-github-api-version"] = apiVersion;
      });
    }
    return octokit;
  }

  // As the app (JWT): who am I, and which installation is on the organization?
  const appOctokit = client({ appId, privateKey });
  const app = await appOctokit.rest.apps.getAuthenticated();
  const installation = await appOctokit.rest.apps.getOrgInstallation({ org });
  const installationId = installation.data.id;

  // As the installation: octokit asks for a token itself, then caches it.
  const octokit = client({ appId, privateKey, installationId });
  const orgs = octokit.rest.orgs;
  const operations = {};

  const pending = await orgs.listPatGrantRequests({ org });
  operations.listPatGrantRequests = report(pending);
  if (args.owner !== undefined) {
    const owner = args.owner.split(",");
    operations.listPatGrantRequestsByOwner = report(
      await orgs.listPatGrantRequests({ org, owner }),
    );
  }
  operations.paginateRequests = await paginate(octokit, orgs.listPatGrantRequests, {
    org,
    per_page: perPage,
    direction: "asc",
  });
  operations.listPatGrantRequestRepositories = {};
  for (const item of pending.data) {
    operations.listPatGrantRequestRepositories[item.id] = report(
      await orgs.listPatGrantRequestRepositories({ org, pat_request_id: item.id }),
    );
  }

  if (args.review !== undefined) {
    const { ids: [id], action } = idsWithAction(args.review);
    operations.reviewPatGrantRequest = report(
      await orgs.reviewPatGrantRequest({ org, pat_request_id: id, action, reason }),
    );
  }
  if (args["bulk-review"] !== undefined) {
    const { ids: patRequestIds, action } = idsWithAction(args["bulk-review"]);
    operations.reviewPatGrantRequestsInBulk = report(
      await orgs.reviewPatGrantRequestsInBulk({
        org,
        pat_request_ids: patRequestIds,
        action,
        reason,
      }),
    );
  }
  if (args.conflict !== undefined) {
    try {
      const response = await orgs.reviewPatGrantRequestsInBulk({
        org,
        pat_request_ids: ids(args.conflict),
        action: "approve",
      });
      operations.conflict = report(response);
    } catch (error) {
      if (error?.name !== "HttpError" || !error.response) throw error;
      operations.conflict = { ...report(error.response), message: error.message };
    }
  }
  operations.listPatGrantRequestsAfterReview = report(await orgs.listPatGrantRequests({ org }));

  const grants = await orgs.listPatGrants({ org });
  operations.listPatGrants = report(grants);
  operations.paginateGrants = await paginate(octokit, orgs.listPatGrants, {
    org,
    per_page: perPage,
  });
  operations.listPatGrantRepositories = {};
  for (const item of grants.data) {
    operations.listPatGrantRepositories[item.id] = report(
      await orgs.listPatGrantRepositories({ org, pat_id: item.id }),
    );
  }
  if (args.revoke !== undefined) {
    const [id] = ids(args.revoke);
    operations.updatePatAccess = report(
      await orgs.updatePatAccess({ org, pat_id: id, action: "revoke" }),
    );
  }
  if (args["bulk-revoke"] !== undefined) {
    operations.updatePatAccesses = report(
      await orgs.updatePatAccesses({ org, pat_ids: ids(args["bulk-revoke"]), action: "revoke" }),
    );
  }
  operations.listPatGrantsAfterRevoke = report(await orgs.listPatGrants({ org }));

  return {
    installation_id: installationId,
    app: report(app),
    installation: report(installation),
    operations,
  };
}

try {
  process.stdout.write(JSON.stringify(await main()) + "\n");
} catch (error) {
  const detail = {
    name: error?.name,
    message: error?.message,
    status: error?.status ?? null,
    request: error?.request ? { method: error.request.method, url: error.request.url } : null,
    response: error?.response ? { headers: error.response.headers, data: error.response.data } : null,
  };
  process.stderr.write(`octokit_eight.mjs failed: ${JSON.stringify(detail, null, 2)}\n`);
  if (error?.stack) process.stderr.write(`${error.stack}\n`);
  process.exitCode = 1;
}
