"""fastbook's cells that today's packages broke, as printed, through Jupyter's own
machinery: 05 `df.style.hide_index()`, 09 `set_categories(..., inplace=True)`,
`plot_partial_dependence`, the chapter's imports, 17 `fastai.gen_doc.nbdoc`. Each runs
because of a book-compatibility item of the fastai spec (labctl/tables/compat.yaml)."""

import nbformat
from nbclient import NotebookClient

cells = [
    # 05_pet_breeds: the confusion table
    "import pandas as pd\ndf = pd.DataFrame({'a': [1.0, 2.5], 'b': ['x', 'y']})\n"
    "html = df.style.hide_index().set_precision(2).to_html()\nassert '2.50' in html",
    # 09_tabular: ordinal categories, in place
    "df = pd.DataFrame({'ProductSize': ['Small', 'Large', 'Medium', 'Small']})\n"
    "sizes = 'Large','Large / Medium','Medium','Small','Mini','Compact'\n"
    "df['ProductSize'] = df['ProductSize'].astype('category')\n"
    "df['ProductSize'].cat.set_categories(sizes, ordered=True, inplace=True)\n"
    "assert list(df['ProductSize'].cat.categories) == list(sizes)",
    # 09_tabular: the chapter's imports
    "from fastbook import *\nfrom pandas.api.types import is_string_dtype, is_numeric_dtype,"
    " is_categorical_dtype\nfrom fastai.tabular.all import *\n"
    "from sklearn.ensemble import RandomForestRegressor\nfrom sklearn.tree import"
    " DecisionTreeRegressor\nfrom dtreeviz.trees import *\nfrom IPython.display import Image,"
    " display_svg, SVG\nimport dtreeviz, treeinterpreter, waterfall_chart, kaggle",
    # 09_tabular: partial dependence
    "import numpy as np\nfrom sklearn.inspection import plot_partial_dependence\n"
    "X = pd.DataFrame({'YearMade': np.arange(100) % 30 + 1980, 'x': np.random.rand(100)})\n"
    "m = RandomForestRegressor(n_estimators=5).fit(X, X.YearMade * 2.0)\n"
    "plot_partial_dependence(m, X, ['YearMade'], grid_resolution=10)",
    # 17_foundations
    "from fastai.gen_doc.nbdoc import *\ndoc(Learner.fit)",
    "print('fastbook cells ran as printed')",
]
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
NotebookClient(nb, timeout=600, kernel_name="python3").execute()
text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
assert "fastbook cells ran as printed" in text, text
print("fastbook compatibility check passed")
