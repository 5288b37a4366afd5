import unittest

import handler


class Event:
    def __init__(self, body):
        self.body, self.headers, self.method, self.query, self.path = body, {}, "POST", {}, "/"


class HandlerTest(unittest.TestCase):
    def test_greets_the_body(self):
        res = handler.handle(Event(b"Pi"), None)
        self.assertEqual(res["statusCode"], 200)
        self.assertEqual(res["body"], "Hello from Python, Pi!\n")

    def test_greets_the_world_without_a_body(self):
        self.assertEqual(handler.handle(Event(b""), None)["body"], "Hello from Python, world!\n")


if __name__ == "__main__":
    unittest.main()
