def handle(event, context):
    """Called once per request. event.body is bytes; return a dict or a str."""
    name = event.body.decode(errors="replace").strip() or "world"
    return {
        "statusCode": 200,
        "body": "Hello from Python, %s!\n" % name,
        "headers": {"Content-Type": "text/plain"},
    }
