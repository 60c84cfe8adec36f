"""Administration of one Satchel server: the rule set every protocol obeys,
the users' roles, and static API tokens (issue 11 parts 1 and 3).

- ``AdminMount`` serves the admin-only REST API under ``/_/api``
  (``api``: every route, who may call it, its codes);
- the admin console's routes (issue 16): accounts (``users``), the data
  model as an administrator sees it (``data``), the first-run setup token
  (``setup``) and the live view - connection counts and the change stream
  websocket ``/_/api/live`` (``live``);
- ``LandingMount`` (``landing``) answers a browser's ``GET /`` with a page
  listing every mount of the table and its paths;
- ``create_admin`` and ``install_rules`` (``bootstrap``) are what
  ``satchel admin create EMAIL`` and ``satchel serve --rules FILE`` run
  against the data dir's store.

An administrator is a user whose role is ``admin`` (built in, never
redefined by a rule file). Administrators sign in like anyone else - ``POST
/auth/login`` (Directus) answers an access token - or use a static token.
"""

from .api import ADMIN_PATH
from .bootstrap import AdminAccount, InstalledRules, create_admin, install_rules
from .mount import AdminMount

__all__ = ["AdminMount", "ADMIN_PATH", "AdminAccount", "InstalledRules", "create_admin", "install_rules"]
