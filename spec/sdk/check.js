// Adobe's own Node SDK (@adobe/aio-lib-campaign-standard 4.x) against the
// sandbox: list, get, create, update.  If the SDK works here, the sandbox
// speaks the API the way Adobe's client expects.
//
//   SDK_DIR=build/sdk CAMPAIGN_BASE_URL=http://127.0.0.1:PORT node spec/sdk/check.js
//
// The SDK has no base-URL option; its OpenAPI file is loaded with require,
// so changing servers[0].url in the cached object before init() redirects
// every call.
'use strict'

const path = require('path')

const base = process.env.CAMPAIGN_BASE_URL
const org = process.env.CAMPAIGN_ORG || 'acme'
const apiKey = process.env.CAMPAIGN_API_KEY || 'sandbox-client'
const token = process.env.CAMPAIGN_ACCESS_TOKEN || 'sandbox-token'
const lib = path.resolve(process.env.SDK_DIR || 'build/sdk',
  'node_modules', '@adobe', 'aio-lib-campaign-standard')

function fail (step, err) {
  console.error(`sdk-check: ${step} failed: ${err && err.message ? err.message : err}`)
  process.exit(1)
}

function expect (step, cond, what) {
  if (!cond) fail(step, what)
  console.log(`sdk-check: ${step} ok`)
}

async function main () {
  if (!base) fail('setup', 'CAMPAIGN_BASE_URL is not set')
  const spec = require(path.join(lib, 'spec', 'api.json'))
  spec.servers[0].url = base.replace(/\/$/, '') + '/{ORGANIZATION}/campaign'
  const sdk = require(lib)
  const client = await sdk.init(org, apiKey, token)

  let res = await client.getAllProfiles({ lineCount: 5, order: 'email', descendingSort: true })
    .catch(e => fail('getAllProfiles', e))
  const content = res.body && res.body.content
  expect('getAllProfiles (5, by email, descending)',
    Array.isArray(content) && content.length === 5 &&
      content.every((p, i) => i === 0 || content[i - 1].email >= p.email),
    'not 5 profiles in descending email order')

  const first = content[0]
  res = await client.getAllProfiles({ filters: ['byEmail'], email: first.email })
    .catch(e => fail('getAllProfiles byEmail', e))
  expect('getAllProfiles (byEmail)',
    res.body.content.length >= 1 && res.body.content.every(p => p.email === first.email),
    'byEmail did not find the profile')

  res = await client.getProfile(first.PKey).catch(e => fail('getProfile', e))
  expect('getProfile', res.body && res.body.PKey === first.PKey, 'another profile came back')

  res = await client.createProfile({
    email: 'sdk.check+node@example.com', firstName: 'Søren', ccpaOptOut: false
  }).catch(e => fail('createProfile', e))
  const created = res.body
  expect('createProfile', res.status === 201 && created && /^@/.test(created.PKey),
    'no 201 with a PKey')

  res = await client.updateProfile(created.PKey, { ccpaOptOut: true })
    .catch(e => fail('updateProfile', e))
  expect('updateProfile', res.status === 200, 'no 200')

  res = await client.getProfile(created.PKey).catch(e => fail('getProfile (after update)', e))
  expect('getProfile (after update)',
    res.body.ccpaOptOut === true && res.body.firstName === 'Søren', 'the update did not stick')
  console.log(`sdk-check: Adobe's SDK ran get, create, update and list against ${base}`)
}

main().catch(e => fail('sdk', e))
