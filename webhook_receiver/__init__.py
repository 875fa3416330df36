def create_app(test_config=None):
    from webhook_receiver.app import create_app as _c
    return _c(test_config)
