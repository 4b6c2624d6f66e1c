"""A Gradio app starts, answers on its port inside the lab (where Jupyter's
jupyter-server-proxy serves it at /proxy/PORT/, behind Jupyter's token), and its API
works; analytics are off so nothing reaches for the network."""

import os
import urllib.request

import gradio as gr
import jupyter_server_proxy  # noqa: F401  (serves /proxy/7860/ behind Jupyter's token)

assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"
assert os.environ.get("GRADIO_ROOT_PATH") == "/proxy/7860"  # its links go through Jupyter
with gr.Blocks() as demo:
    name = gr.Textbox()
    out = gr.Textbox()
    gr.Button("go").click(lambda s: f"hello {s}", name, out, api_name="greet")
demo.launch(server_name="127.0.0.1", server_port=7860, prevent_thread_lock=True,
            share=False, quiet=True)
try:
    page = urllib.request.urlopen("http://127.0.0.1:7860/", timeout=30).read().decode()
    assert "gradio" in page.lower(), page[:200]
    assert '/proxy/7860"' in page, "the page's root is not Jupyter's /proxy/7860"
    from gradio_client import Client

    got = Client("http://127.0.0.1:7860/", verbose=False).predict("lab", api_name="/greet")
    assert got == "hello lab", got
    print("gradio", gr.__version__, "ok:", got)
finally:
    demo.close()
