// @directus/sdk 26 rest() (pinned in package.json) against the real `satchel serve`,
// driven by tests/test_directus_sdk.py. Prints one JSON line per check
// ({"check", "ok", "detail"}).
//
//   node directus_rest_scenario.mjs http://127.0.0.1:PORT
//   env: WRITER_EMAIL, WRITER_PASSWORD, READER_EMAIL, READER_PASSWORD
//        (role "reader": published articles only, fields title and status), API_KEY (Backpack's)
//
// Each client logs in with authentication('json') over /auth/login and then
// speaks the items API through rest(); the records are Backpack's (one data model).
import {
  createDirectus, authentication, rest, createItem, createItems, readItem, readItems, updateItem, deleteItem,
  readMe,
} from '@directus/sdk';

const BASE = process.argv[2];
const env = process.env;
let failures = 0;

function check(name, ok, detail) {
  if (!ok) failures += 1;
  console.log(JSON.stringify({ check: name, ok: !!ok, detail: detail === undefined ? null : detail }));
}

// What a refused request rejects with: the SDK throws the parsed body
// ({errors, response}); the code is what a front-end branches on.
async function refusal(promise) {
  try {
    return { resolved: await promise };
  } catch (error) {
    return { status: error.response && error.response.status, code: error.errors && error.errors[0].extensions.code,
      message: error.errors && error.errors[0].message };
  }
}

async function backpack(method, path, body, cookie) {
  const headers = { authorization: `key ${env.API_KEY}`, 'content-type': 'application/json' };
  if (cookie) headers.cookie = cookie;
  const response = await fetch(`${BASE}${path}`, { method, headers, body: body && JSON.stringify(body) });
  return { response, body: await response.json().catch(() => null) };
}

async function main() {
  const writer = createDirectus(BASE).with(authentication('json')).with(rest());
  const login = await writer.login({ email: env.WRITER_EMAIL, password: env.WRITER_PASSWORD });
  check('login() over /auth/login', login.access_token && login.refresh_token && login.expires > 30000, login);
  const me = await writer.request(readMe());
  check('readMe() names the signed-in user', me && me.email === env.WRITER_EMAIL && me.id, me);

  // CRUD through rest().
  const first = await writer.request(createItem('articles', { title: 'alpha', status: 'published', rank: 3 }));
  check('createItem answers the item with its id', first && typeof first.id === 'string' && first.title === 'alpha', first);
  const more = await writer.request(createItems('articles', [
    { title: 'beta', status: 'draft', rank: 1 },
    { title: 'gamma', status: 'published', rank: 2 },
    { title: 'delta', status: 'published', rank: 5 },
  ]));
  check('createItems answers every item', Array.isArray(more) && more.length === 3, more);

  const one = await writer.request(readItem('articles', first.id));
  check('readItem by id', one && one.id === first.id && one.rank === 3, one);

  const filtered = await writer.request(readItems('articles', {
    filter: { _and: [{ status: { _eq: 'published' } }, { rank: { _lt: 5 } }] },
    sort: ['-rank'], fields: ['title', 'rank'], limit: 10,
  }));
  check('readItems with filter, sort, fields and limit',
    JSON.stringify(filtered) === '[{"title":"alpha","rank":3},{"title":"gamma","rank":2}]', filtered);
  const paged = await writer.request(readItems('articles', { sort: ['rank'], fields: ['title'], limit: 2, offset: 1 }));
  check('readItems with limit and offset', JSON.stringify(paged) === '[{"title":"gamma"},{"title":"alpha"}]', paged);
  const searched = await writer.request(readItems('articles', { search: 'lph', fields: ['title'] }));
  check('readItems with search', JSON.stringify(searched) === '[{"title":"alpha"}]', searched);

  const updated = await writer.request(updateItem('articles', first.id, { rank: 4 }));
  check('updateItem answers the changed item', updated && updated.rank === 4 && updated.title === 'alpha', updated);

  // One data model: the Directus item is the Backpack record (id is _id), and the reverse.
  const bpLogin = await backpack('POST', '/login', { email: env.WRITER_EMAIL, password: env.WRITER_PASSWORD });
  const cookie = bpLogin.response.headers.get('set-cookie').split(';')[0];
  const bpRecord = await backpack('GET', `/articles/${first.id}`, null, cookie);
  check('a Directus item is a Backpack record', bpRecord.body && bpRecord.body._id === first.id && bpRecord.body.rank === 4,
    bpRecord.body);
  const bpCreated = await backpack('POST', '/articles', { title: 'from backpack', status: 'published', rank: 9 }, cookie);
  const seen = await writer.request(readItem('articles', bpCreated.body._id));
  check('a Backpack record is a Directus item', seen && seen.id === bpCreated.body._id && seen.title === 'from backpack', seen);

  // A role that reads published articles only, two fields, and writes nothing.
  const reader = createDirectus(BASE).with(authentication('json')).with(rest());
  await reader.login({ email: env.READER_EMAIL, password: env.READER_PASSWORD });
  // A readable record always shows its key (satchel.protocol.permissions.decide).
  const readable = await reader.request(readItems('articles', { sort: ['title'] }));
  check('the reader role reads published items with its fields (and the key) only',
    JSON.stringify(readable.map(({ id, ...rest }) => [typeof id, rest])) === JSON.stringify([
      { title: 'alpha', status: 'published' }, { title: 'delta', status: 'published' },
      { title: 'from backpack', status: 'published' }, { title: 'gamma', status: 'published' },
    ].map((rest) => ['string', rest])), readable);
  const draft = more.find((item) => item.title === 'beta');
  const hidden = await refusal(reader.request(readItem('articles', draft.id)));
  check('a record the role may not read is FORBIDDEN', hidden.status === 403 && hidden.code === 'FORBIDDEN', hidden);
  const denied = await refusal(reader.request(createItem('articles', { title: 'nope', status: 'published' })));
  check('a write the role may not make is FORBIDDEN', denied.status === 403 && denied.code === 'FORBIDDEN', denied);
  const stillThere = await writer.request(readItems('articles', { filter: { title: { _eq: 'nope' } } }));
  check('the refused write wrote nothing', Array.isArray(stillThere) && stillThere.length === 0, stillThere);
  const badFilter = await refusal(writer.request(readItems('articles', { filter: { rank: { _nope: 1 } } })));
  check('an unknown filter operator is INVALID_QUERY', badFilter.status === 400 && badFilter.code === 'INVALID_QUERY',
    badFilter);

  // Delete, refresh, logout.
  await writer.request(deleteItem('articles', first.id));
  const gone = await refusal(writer.request(readItem('articles', first.id)));
  check('deleteItem removes the record', gone.status === 403 && gone.code === 'FORBIDDEN', gone);
  const bpGone = await backpack('GET', `/articles/${first.id}`, null, cookie);
  check('... from Backpack too', bpGone.response.status === 404, bpGone.body);
  const refreshed = await writer.refresh();
  check('refresh() hands out a new access token', refreshed.access_token && refreshed.access_token !== login.access_token,
    refreshed);
  const stillWorks = await writer.request(readItems('articles', { fields: ['title'], limit: 1 }));
  check('the refreshed token works', Array.isArray(stillWorks) && stillWorks.length === 1, stillWorks);
  // logout() posts the refresh token (and no Bearer): the session ends, as in
  // Directus; the access token in hand lives out its lifetime, as a JWT would.
  await writer.logout();
  const afterLogout = await fetch(`${BASE}/auth/refresh`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshed.refresh_token, mode: 'json' }),
  });
  const afterBody = await afterLogout.json();
  check('logout() revokes the refresh token', afterLogout.status === 401
    && afterBody.errors[0].extensions.code === 'INVALID_CREDENTIALS', [afterLogout.status, afterBody]);
}

main().then(
  () => process.exit(failures ? 1 : 0),
  (error) => {
    check('scenario ran to the end', false, String(error && error.stack || error));
    process.exit(1);
  },
);
