async def run(settings, res):
    pass
