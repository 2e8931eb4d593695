"""Writes .dvc/plots/offline.html: DVC's page template with Vega, Vega-Lite and Vega-Embed inline, so
`dvc plots show` (which .dvc/config points at it) draws its charts without a network. DVC's default
page loads the three from a CDN and is blank offline. Regenerate after a vl-convert-python upgrade:

    pip install vl-convert-python && python .dvc/plots/offline_template.py
"""

from pathlib import Path

import vl_convert

# DVC fills {plot_divs} (each chart a div and a script calling vegaEmbed) and {refresh_tag};
# {scripts}, its CDN tags, is left out. Vega-Lite 5, the version of the specs in .dvc/plots/*.json. The bundle sets window.vegaEmbed, vega and vegaLite.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
    <script type="text/javascript">
%s
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""

if __name__ == "__main__":
    target = Path(__file__).with_name("offline.html")
    target.write_text(PAGE % vl_convert.javascript_bundle(vl_version="5.21"), encoding="utf-8")
    print(f"wrote {target} (Vega {vl_convert.get_vega_version()}, Vega-Lite 5.21, Vega-Embed {vl_convert.get_vega_embed_version()})")
