"""A typed client for MyAwesomeApi behind the kernel's proxy plugin: the Backstage doc
"Using the Backstage Proxy from Within a Plugin" (seed 000) for kernel plugins (see the README).

```python
client = MyAwesomeApiClient.from_config(config, token=token)   # <backend.baseUrl>/api/proxy/myawesomeapi
users = await client.list_users()                               # list[User]
```
"""

from __future__ import annotations

from .client import DEFAULT_PROXY_PATH, MyAwesomeApi, MyAwesomeApiClient, TokenSource, User
from .errors import ResponseError

__all__ = ["DEFAULT_PROXY_PATH", "MyAwesomeApi", "MyAwesomeApiClient", "ResponseError", "TokenSource", "User"]
