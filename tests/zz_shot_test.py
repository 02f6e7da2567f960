from playwright.sync_api import Browser
from gridwatch.local import LocalStack
from tests.test_console import api_url, browser, signed_in  # noqa

def test_shot(stack: LocalStack, nodes, api_url: str, browser: Browser) -> None:
    w, d = stack.people_of_venue(nodes[0].site)
    errors: list[str] = []
    p = signed_in(browser, api_url, w, errors, phone=True)
    p.evaluate("document.getElementById('bell').hidden=false; document.getElementById('unread').hidden=false; document.getElementById('unread').textContent='3'")
    p.screenshot(path="/tmp/shot-phone.png")
    p.locator('#me-menu').click()
    p.screenshot(path="/tmp/shot-phone-menu.png")
    p.locator('#bell').click()
    p.evaluate("""document.getElementById('notification-list').innerHTML = '<li class="notification unread" data-severity="red"><div class="row"><span class="chip red">red</span><span class="title"><a href="#/task/1">Door forced open at 海城驿站</a></span><span class="spacer"></span><time class="muted small">2 min ago</time></div><div class="body small">Task #1 is yours; accept it within 5 minutes.</div><button class="small quiet">Mark read</button></li><li class="notification read"><div class="row"><span class="title"><a>Older one</a></span></div></li>'""")
    p.screenshot(path="/tmp/shot-phone-panel.png")
    q = signed_in(browser, api_url, d, errors)
    q.evaluate("document.getElementById('bell').hidden=false")
    q.screenshot(path="/tmp/shot-desk.png")
    print(errors)
