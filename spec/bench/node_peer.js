// Adobe's Node SDK (@adobe/aio-lib-campaign-standard 4.x) doing the
// benchmark's requests.  The SDK has no base-URL option: servers[0].url of
// its OpenAPI file (loaded with require, so cached) is pointed at the
// sandbox before init().
//
//   node spec/bench/node_peer.js get N KEYS          sequential getProfile
//   node spec/bench/node_peer.js patch N KEYS CONC   updateProfile {ccpaOptOut:
//                                                    true}, CONC in flight
//
// SDK_DIR: where npm installed it (build/bench/node).  Server and
// credentials from the CAMPAIGN_* environment.  Prints "N SECONDS" for
// the timed loop, after a short untimed warm-up.
'use strict'

const fs = require('fs')
const path = require('path')

const [mode, nText, keysFile, concText] = process.argv.slice(2)
const n = Number(nText)
const conc = Number(concText || 1)
if (!['get', 'patch'].includes(mode) || !(n > 0) || !keysFile) {
  console.error('usage: node_peer.js get|patch N KEYS [CONC]')
  process.exit(2)
}

const lib = path.resolve(process.env.SDK_DIR || 'build/bench/node',
  'node_modules', '@adobe', 'aio-lib-campaign-standard')
const base = process.env.CAMPAIGN_BASE_URL
const keys = fs.readFileSync(keysFile, 'utf8').split('\n').filter(Boolean).slice(0, n)

let failed = 0

async function main () {
  const spec = require(path.join(lib, 'spec', 'api.json'))
  spec.servers[0].url = base.replace(/\/$/, '') + '/{ORGANIZATION}/campaign'
  const sdk = require(lib)
  const client = await sdk.init(process.env.CAMPAIGN_ORG || 'acme',
    process.env.CAMPAIGN_API_KEY || 'sandbox-client',
    process.env.CAMPAIGN_ACCESS_TOKEN || 'sandbox-token')

  const getOne = async () => {
    const res = await client.getProfile(keys[0])
    if (!res.body || res.body.PKey !== keys[0]) failed++
  }
  const run = async (count, inFlight) => {
    let next = 0
    const worker = async () => {
      while (next < count) {
        const i = next++
        try {
          const res = await client.updateProfile(keys[i % keys.length], { ccpaOptOut: true })
          if (res.status !== 200) failed++
        } catch (e) { failed++ }
      }
    }
    await Promise.all(Array.from({ length: inFlight }, worker))
  }

  if (mode === 'get') {
    for (let i = 0; i < 5; i++) await getOne()
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) await getOne()
    report(t0)
  } else {
    await run(conc * 2, conc)
    const t0 = process.hrtime.bigint()
    await run(n, conc)
    report(t0)
  }
}

function report (t0) {
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  if (failed > 0) {
    console.error(`node_peer: ${failed} calls failed`)
    process.exit(1)
  }
  console.log(`${n} ${secs.toFixed(6)}`)
}

main().catch(e => { console.error('node_peer: ' + (e && e.message ? e.message : e)); process.exit(1) })
